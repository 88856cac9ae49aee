<?php

declare(strict_types=1);

namespace CommerceJobs\Client\Exception;

/** A 401: the apiserver did not accept the token (expired, revoked, or from another cluster). */
final class UnauthorizedException extends ApiException
{
}
