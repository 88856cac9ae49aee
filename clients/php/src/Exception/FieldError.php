<?php

declare(strict_types=1);

namespace CommerceJobs\Client\Exception;

/** One refused field of a CommerceJob: its path (e.g. `spec.queue`) and why. */
final class FieldError
{
    public function __construct(
        public readonly string $field,
        public readonly string $message,
        public readonly string $reason = 'FieldValueInvalid',
    ) {
    }

    public function __toString(): string
    {
        return $this->field . ': ' . $this->message;
    }
}
