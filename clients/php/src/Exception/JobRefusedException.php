<?php

declare(strict_types=1);

namespace CommerceJobs\Client\Exception;

use CommerceJobs\Client\CommerceJob;

/**
 * The operator refused to run the job (it never started): its state is Failed with a refusal reason, e.g.
 * InvalidSpec. Thrown by `Client::wait()`. `getField()` is the field that the operator's message names, if any.
 */
class JobRefusedException extends \RuntimeException implements CommerceJobsException
{
    public function __construct(string $message, private readonly CommerceJob $job, private readonly ?string $field)
    {
        parent::__construct($message);
    }

    public function getJob(): CommerceJob
    {
        return $this->job;
    }

    /** The reason of the job's status, e.g. "CommandNotAllowed". */
    public function getReason(): string
    {
        return (string) $this->job->getReason();
    }

    /** The refused field, e.g. `spec.command` or `spec.dependingJobs[0].command`; null when the message names none. */
    public function getField(): ?string
    {
        return $this->field;
    }
}
