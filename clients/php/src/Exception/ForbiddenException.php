<?php

declare(strict_types=1);

namespace CommerceJobs\Client\Exception;

/**
 * A 403: RBAC does not let the caller (usually the pod's ServiceAccount) use this verb on this resource, or an
 * admission policy refused the request. `getVerb()`/`getResource()` say what was refused.
 */
final class ForbiddenException extends ApiException
{
    /** @param array<string, mixed> $status */
    public function __construct(
        string $message,
        private readonly string $verb,
        private readonly string $resource,
        private readonly ?string $user,
        private readonly ?string $namespace,
        private readonly bool $rbac,
        array $status = [],
    ) {
        parent::__construct($message, 403, 'Forbidden', $status);
    }

    /** The verb that was refused, e.g. "patch" (RBAC's word, not the HTTP method). */
    public function getVerb(): string
    {
        return $this->verb;
    }

    /** The resource, e.g. "commercejobs.commercejobs.dev". */
    public function getResource(): string
    {
        return $this->resource;
    }

    /** Who was refused, e.g. "system:serviceaccount:shop:shop"; null when the apiserver did not say. */
    public function getUser(): ?string
    {
        return $this->user;
    }

    public function getNamespace(): ?string
    {
        return $this->namespace;
    }

    /** True when RBAC refused (a Role lacks the verb); false when an admission policy did. */
    public function isRbac(): bool
    {
        return $this->rbac;
    }
}
