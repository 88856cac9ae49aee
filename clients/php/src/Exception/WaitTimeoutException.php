<?php

declare(strict_types=1);

namespace CommerceJobs\Client\Exception;

use CommerceJobs\Client\CommerceJob;

/** The job was not final when the wait's time was up; `getJob()` is its last state seen. */
final class WaitTimeoutException extends \RuntimeException implements CommerceJobsException
{
    public function __construct(string $message, private readonly CommerceJob $job)
    {
        parent::__construct($message);
    }

    public function getJob(): CommerceJob
    {
        return $this->job;
    }
}
