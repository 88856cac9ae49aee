<?php

declare(strict_types=1);

namespace CommerceJobs\Client\Exception;

/**
 * The apiserver refused the CommerceJob because of one or more fields: the CRD's schema (a pattern, a range, a type)
 * or one of its CEL rules (a required field, an immutable one). `getField()` is the first refused field's path.
 */
class InvalidFieldException extends ApiException
{
    /**
     * @param non-empty-list<FieldError> $errors
     * @param array<string, mixed> $status
     */
    public function __construct(
        string $message,
        private readonly array $errors,
        int $httpStatus,
        string $reason,
        array $status = [],
    ) {
        parent::__construct($message, $httpStatus, $reason, $status);
    }

    /** The path of the first refused field, e.g. `spec.queue` or `metadata.name`. */
    public function getField(): string
    {
        return $this->errors[0]->field;
    }

    /** @return list<string> the paths of every refused field */
    public function getFields(): array
    {
        return array_map(static fn (FieldError $e): string => $e->field, $this->errors);
    }

    /** @return non-empty-list<FieldError> */
    public function getErrors(): array
    {
        return $this->errors;
    }
}
