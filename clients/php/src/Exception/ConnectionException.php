<?php

declare(strict_types=1);

namespace CommerceJobs\Client\Exception;

/** The apiserver could not be reached, or the connection broke (curl's error, e.g. a refused connection or TLS). */
final class ConnectionException extends \RuntimeException implements CommerceJobsException
{
}
