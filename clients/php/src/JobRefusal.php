<?php

declare(strict_types=1);

namespace CommerceJobs\Client;

use CommerceJobs\Client\Exception\CommandNotAllowedException;
use CommerceJobs\Client\Exception\JobRefusedException;

/**
 * A final job that the operator refused to run is an exception, the others are results (pure). The refusals are
 * Failed jobs whose reason says they never ran: CommandNotAllowed (the allowlist), InvalidSpec (a field that the
 * Job could not take), TemplateNotFound (no such CommerceJobTemplate, after the operator's wait for it).
 */
final class JobRefusal
{
    public const REASONS = ['CommandNotAllowed', 'InvalidSpec', 'TemplateNotFound'];

    /** Returns `$job` unless the operator refused it. */
    public static function check(CommerceJob $job): CommerceJob
    {
        $reason = $job->getReason();
        if ($job->getState() !== CommerceJob::STATE_FAILED || !in_array($reason, self::REASONS, true)) {
            return $job;
        }
        $message = $job->getMessage() ?? (string) ($job->getCondition()['message'] ?? '');
        $text = sprintf('the operator refused to run the CommerceJob %s (%s): %s', $job->getName(), $reason, $message);
        // The operator's messages begin with the field they are about: "spec.command '_x' is not allowed: ...".
        $field = preg_match('/^(spec(?:\.[A-Za-z]+|\[\d+\])+)\b/', $message, $m) ? $m[1] : null;
        if ($reason === 'TemplateNotFound') {
            $field = 'spec.templateRef';
        }

        if ($reason === 'CommandNotAllowed') {
            throw new CommandNotAllowedException($text, $job, $field);
        }
        throw new JobRefusedException($text, $job, $field);
    }
}
