<?php

declare(strict_types=1);

namespace CommerceJobs\Client\Tests;

use CommerceJobs\Client\CommerceJob;
use CommerceJobs\Client\Exception\CommandNotAllowedException;
use CommerceJobs\Client\Exception\JobRefusedException;
use CommerceJobs\Client\JobRefusal;
use PHPUnit\Framework\TestCase;

/** CommerceJobs as the operator left them (recorded from the operator on the local control plane). */
final class CommerceJobTest extends TestCase
{
    private static function recorded(string $fixture): CommerceJob
    {
        return new CommerceJob(json_decode((string) file_get_contents(__DIR__ . "/fixtures/$fixture.json"), true));
    }

    public function testAFinishedJobWithItsDependent(): void
    {
        $job = self::recorded('commercejob-finished-with-dependent');

        self::assertSame('silver-import-kqhmz', $job->getName());
        self::assertSame('silver:import', $job->getCommand());
        self::assertSame(['tmp'], $job->getArgs());
        self::assertSame(CommerceJob::STATE_FINISHED, $job->getState());
        self::assertTrue($job->isFinished());
        self::assertTrue($job->isInFinalState());
        self::assertSame(0, $job->getExitCode());
        self::assertSame(1, $job->getAttempts());
        self::assertSame([['name' => 'silver-import-kqhmz-index', 'state' => 'Created']], $job->getDependents());
        self::assertSame('True', $job->getCondition()['status'] ?? null);
        self::assertSame($job, JobRefusal::check($job));
    }

    public function testAFailedCommandIsAResultNotARefusal(): void
    {
        $job = self::recorded('commercejob-failed-exit-3');

        self::assertSame($job, JobRefusal::check($job));
        self::assertSame(CommerceJob::STATE_FAILED, $job->getState());
        self::assertFalse($job->isFinished());
        self::assertSame(3, $job->getExitCode());
        self::assertSame("resending 3 orders\nERP unreachable\n", $job->getOutput());
    }

    public function testTheAllowlistsRefusalIsAnExceptionNamingTheField(): void
    {
        $job = self::recorded('commercejob-command-not-allowed');
        try {
            JobRefusal::check($job);
            self::fail('no exception');
        } catch (CommandNotAllowedException $e) {
            self::assertSame('spec.command', $e->getField());
            self::assertSame('CommandNotAllowed', $e->getReason());
            self::assertSame($job, $e->getJob());
            self::assertSame(
                "the operator refused to run the CommerceJob secret-kgxs9 (CommandNotAllowed): spec.command '_secret' "
                . "is not allowed: the operator's allowedCommands are [!_]*",
                $e->getMessage(),
            );
        }
    }

    public function testARefusedDependentIsNamedByItsPath(): void
    {
        $job = self::recorded('commercejob-dependent-not-allowed');
        try {
            JobRefusal::check($job);
            self::fail('no exception');
        } catch (CommandNotAllowedException $e) {
            self::assertSame('spec.dependingJobs[0].command', $e->getField());
            self::assertSame([['name' => 'silver-import-nk9wz-purge', 'state' => 'Canceled']], $e->getJob()->getDependents());
        }
    }

    public function testOtherRefusalsOfTheOperator(): void
    {
        $object = json_decode((string) file_get_contents(__DIR__ . '/fixtures/commercejob-failed-exit-3.json'), true);
        $object['status']['reason'] = 'InvalidSpec';
        $object['status']['message'] = 'the apiserver refused the Job: spec.template.spec.containers[0].env[0].name: Invalid value: "A=B"';
        try {
            JobRefusal::check(new CommerceJob($object));
            self::fail('no exception');
        } catch (JobRefusedException $e) {
            self::assertNotInstanceOf(CommandNotAllowedException::class, $e);
            self::assertSame('InvalidSpec', $e->getReason());
            self::assertNull($e->getField());  // a field of the Job, not of the CommerceJob
            self::assertStringContainsString('env[0].name', $e->getMessage());
        }
    }

    public function testAJobTheOperatorHasNotSeenYetIsPending(): void
    {
        $job = new CommerceJob(['metadata' => ['name' => 'new-one'], 'spec' => ['command' => 'silver:import']]);

        self::assertSame(CommerceJob::STATE_PENDING, $job->getState());
        self::assertFalse($job->isInFinalState());
        self::assertNull($job->getExitCode());
        self::assertSame([], $job->getDependents());
    }
}
