<?php

declare(strict_types=1);

namespace CommerceJobs\Client\Exception;

/** Every exception of this client implements it: `catch (CommerceJobsException $e)` catches them all. */
interface CommerceJobsException extends \Throwable
{
}
