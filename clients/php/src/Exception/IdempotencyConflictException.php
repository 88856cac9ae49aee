<?php

declare(strict_types=1);

namespace CommerceJobs\Client\Exception;

use CommerceJobs\Client\CommerceJob;

/**
 * A job with the name that the idempotency key gives exists, but it is not the job that was asked for: another spec
 * (`getFields()` names the fields that differ) or another key. The existing job is left alone.
 */
final class IdempotencyConflictException extends \RuntimeException implements CommerceJobsException
{
    /** @param list<string> $fields */
    public function __construct(string $message, private readonly CommerceJob $existing, private readonly array $fields)
    {
        parent::__construct($message);
    }

    public function getExisting(): CommerceJob
    {
        return $this->existing;
    }

    /** @return list<string> the paths that differ, e.g. ["spec.params"] */
    public function getFields(): array
    {
        return $this->fields;
    }
}
