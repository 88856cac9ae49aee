<?php

declare(strict_types=1);

namespace CommerceJobs\Client\Tests;

use CommerceJobs\Client\CommerceJob;
use CommerceJobs\Client\DependingJob;
use CommerceJobs\Client\Job;
use CommerceJobs\Client\Manifest;
use PHPUnit\Framework\TestCase;

/** JMS's Job surface onto the CommerceJob's fields. */
final class ManifestTest extends TestCase
{
    public function testTheJmsConstructorMapsOntoCommandParamsQueueAndPriority(): void
    {
        $body = Manifest::build(new Job('silver:import', ['tmp', '--env=prod'], true, 'imports', Job::PRIORITY_HIGH));

        self::assertSame([
            'apiVersion' => 'commercejobs.dev/v1alpha1',
            'kind' => 'CommerceJob',
            'metadata' => ['generateName' => 'silver-import-'],
            'spec' => ['command' => 'silver:import', 'params' => ['tmp', '--env=prod'], 'queue' => 'imports', 'priority' => 5],
        ], $body);
        self::assertSame([-5, 0, 5], [Job::PRIORITY_LOW, Job::PRIORITY_DEFAULT, Job::PRIORITY_HIGH]);
    }

    public function testWhatIsNotSetIsNotSent(): void
    {
        // So the operator's defaults apply (queue "default", priority 0), or a template's values.
        self::assertSame(['command' => 'ibexa:commerce:refresh-cache'], Manifest::spec(Job::create('ibexa:commerce:refresh-cache')));
    }

    public function testExecuteAfterIsSentInUtc(): void
    {
        $job = (new Job('silver:import'))->setExecuteAfter(new \DateTimeImmutable('2026-12-03 10:15:30', new \DateTimeZone('Europe/Berlin')));

        self::assertSame('2026-12-03T09:15:30Z', Manifest::spec($job)['executeAfter']);
    }

    public function testMaxRuntimeZeroIsNoLimitAsInJms(): void
    {
        $job = (new Job('silver:import'))->setMaxRuntime(0)->setMaxRetries(3);
        self::assertSame(['command' => 'silver:import', 'maxRetries' => 3], Manifest::spec($job));

        $job->setMaxRuntime(900);
        self::assertSame(900, Manifest::spec($job)['maxRuntimeSeconds']);
    }

    public function testDependenciesAreTheNamesOfJobsThatExist(): void
    {
        $created = new Job('silver:import', ['tmp']);
        $created->markCreated('silver-import-x7k2p');
        $existing = new CommerceJob(['metadata' => ['name' => 'refresh-cache']]);
        $job = (new Job('ibexa:commerce:index-econtent-job'))
            ->addDependency($created)
            ->addDependency($existing)
            ->addDependency('export-prices')
            ->addDependency('export-prices');

        self::assertSame(['silver-import-x7k2p', 'refresh-cache', 'export-prices'], Manifest::spec($job)['dependsOn']);
    }

    public function testADependencyThatWasNotCreatedIsRefusedBeforeAnyRequest(): void
    {
        $job = (new Job('ibexa:commerce:index-econtent-job'))->addDependency(new Job('silver:import'));

        $this->expectException(\LogicException::class);
        $this->expectExceptionMessage('the job silver:import has not been created yet');
        Manifest::build($job);
    }

    public function testDependingJobsBecomeTheTreeOfSpecDependingJobs(): void
    {
        $job = (new Job('silver:import', ['tmp']))->addDependingJob(
            (new DependingJob('index', 'ibexa:commerce:index-econtent-job', ['swap']))
                ->setLabel('Index econtent tmp cores')
                ->setMaxRetries(2)
                ->addDependingJob(new DependingJob('refresh', 'ibexa:commerce:refresh-cache')),
        );

        self::assertSame([[
            'name' => 'index',
            'command' => 'ibexa:commerce:index-econtent-job',
            'params' => ['swap'],
            'label' => 'Index econtent tmp cores',
            'maxRetries' => 2,
            'dependingJobs' => [['name' => 'refresh', 'command' => 'ibexa:commerce:refresh-cache']],
        ]], Manifest::spec($job)['dependingJobs']);
    }

    public function testATemplateJobSendsOnlyTheTemplateAndWhatOverridesIt(): void
    {
        self::assertSame(
            ['apiVersion' => 'commercejobs.dev/v1alpha1', 'kind' => 'CommerceJob', 'metadata' => ['generateName' => 'import-solr-'],
             'spec' => ['templateRef' => ['name' => 'import-solr']]],
            Manifest::build(Job::fromTemplate('import-solr')),
        );
        self::assertSame(
            ['templateRef' => ['name' => 'import-solr'], 'priority' => 5],
            Manifest::spec(Job::fromTemplate('import-solr')->setPriority(Job::PRIORITY_HIGH)),
        );
    }

    public function testTheIdempotencyKeyGivesOneValidNamePerKey(): void
    {
        $first = Manifest::build((new Job('silver:import', ['tmp']))->setIdempotencyKey('order 4711 / export'));
        $again = Manifest::build((new Job('silver:import', ['tmp']))->setIdempotencyKey('order 4711 / export'));
        $other = Manifest::build((new Job('silver:import', ['tmp']))->setIdempotencyKey('order 4712 / export'));

        self::assertSame($first, $again);
        self::assertMatchesRegularExpression('/^silver-import-[0-9a-f]{16}$/', $first['metadata']['name']);
        self::assertNotSame($first['metadata']['name'], $other['metadata']['name']);
        self::assertSame(['commercejobs.dev/idempotency-key' => 'order 4711 / export'], $first['metadata']['annotations']);
        self::assertArrayNotHasKey('generateName', $first['metadata']);
    }

    public function testAnyCommandGivesAValidName(): void
    {
        $long = str_repeat('Very_Long.Command:Name', 10);
        foreach (['silver:import', '_internal', 'A.B', $long, ':::'] as $command) {
            $name = Manifest::build((new Job($command))->setIdempotencyKey('k'))['metadata']['name'];
            self::assertMatchesRegularExpression('/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/', $name, $command);
            self::assertLessThanOrEqual(57, strlen($name), $command);
        }
    }

    public function testTheSameJobMatchesWhateverTheApiserversKeyOrder(): void
    {
        $job = (new Job('silver:import', ['tmp'], true, 'imports'))
            ->addDependingJob((new DependingJob('index', 'ibexa:commerce:index-econtent-job'))->setMaxRetries(1));
        $wanted = Manifest::spec($job);
        // The apiserver returns an object's keys sorted; a cancel and another executeAfter are still this job.
        $existing = ['cancel' => true, 'command' => 'silver:import', 'dependingJobs' => [['command' => 'ibexa:commerce:index-econtent-job', 'maxRetries' => 1, 'name' => 'index']],
            'executeAfter' => '2026-12-03T09:00:00Z', 'params' => ['tmp'], 'queue' => 'imports'];

        self::assertSame([], Manifest::differences($wanted, $existing));
    }

    public function testAnotherJobUnderTheSameKeyIsNamedByItsFields(): void
    {
        $wanted = Manifest::spec(new Job('silver:import', ['tmp']));

        self::assertSame(['spec.params'], Manifest::differences($wanted, ['command' => 'silver:import', 'params' => ['live']]));
        self::assertSame(['spec.queue'], Manifest::differences($wanted, ['command' => 'silver:import', 'params' => ['tmp'], 'queue' => 'imports']));
    }

    public function testATemplateJobMayHaveTheTemplatesFieldsFilledIn(): void
    {
        $wanted = Manifest::spec(Job::fromTemplate('import-solr'));
        $filled = ['templateRef' => ['name' => 'import-solr'], 'command' => 'silver:import', 'params' => ['tmp']];

        self::assertSame([], Manifest::differences($wanted, $filled));
        self::assertSame(['spec.templateRef'], Manifest::differences($wanted, ['templateRef' => ['name' => 'other']] + $filled));
    }

    public function testUnconfirmedJobsAndNonStringArgsAreRefusedAtOnce(): void
    {
        try {
            new Job('silver:import', [], false);
            self::fail('an unconfirmed job was accepted');
        } catch (\InvalidArgumentException $e) {
            self::assertStringContainsString('unconfirmed jobs', $e->getMessage());
        }
        $this->expectExceptionMessage('$args[1] must be a string, got int');
        new Job('silver:import', ['tmp', 5]);
    }

    public function testFieldsOfTheJobsOwnMethodsCannotBeSetTwoWays(): void
    {
        $this->expectExceptionMessage('spec.queue is set by the Job\'s own arguments');
        (new Job('silver:import'))->setSpecField('queue', 'imports');
    }
}
