<?php

declare(strict_types=1);

namespace DemoShop\Command;

use CommerceJobs\Client\Client;
use CommerceJobs\Client\CommerceJob;
use CommerceJobs\Client\DependingJob;
use CommerceJobs\Client\Exception\CommerceJobsException;
use CommerceJobs\Client\Job;
use Symfony\Component\Console\Attribute\AsCommand;
use Symfony\Component\Console\Command\Command;
use Symfony\Component\Console\Input\InputInterface;
use Symfony\Component\Console\Input\InputOption;
use Symfony\Component\Console\Output\ConsoleOutputInterface;
use Symfony\Component\Console\Output\OutputInterface;

/**
 * A console command that starts another job, the most common use of JMSJobQueueBundle's PHP API: it starts the
 * import (a CommerceJob) with its indexing as a depending job, waits for both, and prints what they did. Run as a
 * CommerceJob itself, it uses the pod's ServiceAccount (which needs only create, get and watch on commercejobs:
 * manifests/examples/rbac/shop-php-client.yaml).
 *
 * For the demo shop (examples/demo-shop), this file goes to src/Command/StartImportCommand.php and the client is
 * installed into its vendor/ (clients/php/README.md).
 */
#[AsCommand(name: 'shop:start-import', description: 'Starts the import as a CommerceJob, with its indexing after it, and waits for both')]
final class StartImportCommand extends Command
{
    protected function configure(): void
    {
        $this
            ->addOption('table', null, InputOption::VALUE_REQUIRED, 'The tables to import into', 'tmp')
            ->addOption('import-command', null, InputOption::VALUE_REQUIRED, 'The console command of the import', 'silver:import')
            ->addOption('index-command', null, InputOption::VALUE_REQUIRED, 'The console command that indexes after it', 'ibexa:commerce:index-econtent-job')
            ->addOption('key', null, InputOption::VALUE_REQUIRED, 'An idempotency key: the same key starts the import once')
            ->addOption('timeout', null, InputOption::VALUE_REQUIRED, 'Seconds to wait for the import and its indexing', '600');
    }

    protected function execute(InputInterface $input, OutputInterface $output): int
    {
        $errors = $output instanceof ConsoleOutputInterface ? $output->getErrorOutput() : $output;
        // Before: $job = new Job('silver:import', ['tmp'], true, 'imports', Job::PRIORITY_HIGH);
        //         $index = new Job('ibexa:commerce:index-econtent-job'); $index->addDependency($job);
        //         $em->persist($job); $em->persist($index); $em->flush();
        $job = new Job((string) $input->getOption('import-command'), [(string) $input->getOption('table')], true, 'imports', Job::PRIORITY_HIGH);
        $job->setMaxRuntime(3600)->setMaxRetries(1);
        $job->addDependingJob((new DependingJob('index', (string) $input->getOption('index-command')))->setMaxRetries(1));
        if ($input->getOption('key') !== null) {
            $job->setIdempotencyKey((string) $input->getOption('key'));
        }

        try {
            $client = Client::fromEnvironment();
            $created = $client->create($job);
            $output->writeln(sprintf('Started CommerceJob %s/%s: %s', $client->getNamespace(), $created->getName(), $job->getCommand()));
            $tree = $client->waitTree($created->getName(), (float) $input->getOption('timeout'));
        } catch (CommerceJobsException $e) {
            // The apiserver's or the operator's refusal, naming the field, the verb or the allowlist.
            $errors->writeln(sprintf('<error>%s</error>: %s', (new \ReflectionClass($e))->getShortName(), $e->getMessage()));

            return Command::FAILURE;
        }

        $ok = true;
        foreach ($tree as $done) {
            $this->report($output, $done);
            $ok = $ok && $done->isFinished();
        }
        foreach ($tree[0]->getDependents() as $dependent) {
            if ($dependent['state'] === CommerceJob::STATE_CANCELED) {
                $output->writeln(sprintf('%s: Canceled (its parent did not finish)', $dependent['name']));
                $ok = false;
            }
        }

        return $ok ? Command::SUCCESS : Command::FAILURE;
    }

    private function report(OutputInterface $output, CommerceJob $job): void
    {
        $code = $job->getExitCode();
        $output->writeln(sprintf('%s: %s%s', $job->getName(), $job->getState(), $code !== null ? ", exit code $code" : ''));
        foreach (explode("\n", rtrim($job->getOutput())) as $line) {
            if ($line !== '') {
                $output->writeln('  | ' . $line);
            }
        }
    }
}
