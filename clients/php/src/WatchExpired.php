<?php

declare(strict_types=1);

namespace CommerceJobs\Client;

/** @internal A watch's resourceVersion is too old (410 Gone): Client::wait() reads the job again. */
final class WatchExpired extends \RuntimeException
{
}
