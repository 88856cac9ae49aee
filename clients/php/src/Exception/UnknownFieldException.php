<?php

declare(strict_types=1);

namespace CommerceJobs\Client\Exception;

/**
 * The CommerceJob CRD installed in the cluster has no such field (the client asks for strict field validation, so
 * the apiserver refuses it instead of dropping it silently). Typically a feature of this client, such as
 * `spec.dependsOn`, that the installed operator does not have yet.
 */
final class UnknownFieldException extends InvalidFieldException
{
}
