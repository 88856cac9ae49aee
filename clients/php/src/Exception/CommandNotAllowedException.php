<?php

declare(strict_types=1);

namespace CommerceJobs\Client\Exception;

/**
 * The command (or a dependent's command, or a replaced console) is outside the operator's allowedCommands: the job
 * is Failed with the reason CommandNotAllowed, and never ran.
 */
final class CommandNotAllowedException extends JobRefusedException
{
}
