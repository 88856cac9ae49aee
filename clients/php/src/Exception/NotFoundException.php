<?php

declare(strict_types=1);

namespace CommerceJobs\Client\Exception;

/** A 404: the CommerceJob does not exist (or was deleted), or the CommerceJob CRD is not installed. */
final class NotFoundException extends ApiException
{
}
