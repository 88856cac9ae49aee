<?php

declare(strict_types=1);

namespace CommerceJobs\Client\Exception;

/**
 * The apiserver refused a request. Its Status (code, reason, message) is kept as it came; the subclasses say what it
 * means for a CommerceJob (a field, a missing right, a missing job).
 */
class ApiException extends \RuntimeException implements CommerceJobsException
{
    /** @param array<string, mixed> $status the apiserver's Status object (empty when the body was not one) */
    public function __construct(
        string $message,
        private readonly int $httpStatus,
        private readonly string $reason,
        private readonly array $status = [],
        ?\Throwable $previous = null,
    ) {
        parent::__construct($message, $httpStatus, $previous);
    }

    /** The HTTP status code, e.g. 422. */
    public function getHttpStatus(): int
    {
        return $this->httpStatus;
    }

    /** The Status reason, e.g. "Invalid", "Forbidden", "NotFound". */
    public function getReason(): string
    {
        return $this->reason;
    }

    /** The apiserver's own message. */
    public function getApiMessage(): string
    {
        return is_string($this->status['message'] ?? null) ? $this->status['message'] : $this->getMessage();
    }

    /** @return array<string, mixed> */
    public function getStatus(): array
    {
        return $this->status;
    }
}
