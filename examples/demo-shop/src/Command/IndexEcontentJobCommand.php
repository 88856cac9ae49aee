<?php

declare(strict_types=1);

namespace DemoShop\Command;

use Symfony\Component\Console\Attribute\AsCommand;
use Symfony\Component\Console\Command\Command;
use Symfony\Component\Console\Input\InputArgument;
use Symfony\Component\Console\Input\InputInterface;
use Symfony\Component\Console\Input\InputOption;
use Symfony\Component\Console\Output\OutputInterface;

/** The job that indexes imported eContent into the search cores: the import's depending job. */
#[AsCommand(name: 'ibexa:commerce:index-econtent-job', description: 'Indexes eContent into the search cores')]
final class IndexEcontentJobCommand extends Command
{
    private const OBJECTS = 1298;

    protected function configure(): void
    {
        $this
            ->addArgument('action', InputArgument::OPTIONAL, '"swap" swaps the tmp and live cores instead of indexing')
            ->addOption('siteaccess', null, InputOption::VALUE_REQUIRED, 'The SiteAccess ("import" reads the tmp tables)')
            ->addOption('chunk', 'c', InputOption::VALUE_REQUIRED, 'Objects per indexing request', '5000')
            ->addOption('reset', 'r', InputOption::VALUE_NONE, 'Delete the previous eContent data first');
    }

    protected function execute(InputInterface $input, OutputInterface $output): int
    {
        if ($input->getArgument('action') === 'swap') {
            $output->writeln('Swapping the tmp and live eContent cores... done');

            return Command::SUCCESS;
        }
        $chunk = max(1, (int) $input->getOption('chunk'));
        $siteaccess = $input->getOption('siteaccess') ?? 'default';
        if ($input->getOption('reset')) {
            $output->writeln('Deleted the previous eContent data');
        }
        $output->writeln(sprintf('Indexing eContent (siteaccess %s) in chunks of %d...', $siteaccess, $chunk));
        for ($done = 0; $done < self::OBJECTS; $done += $chunk) {
            $output->writeln(sprintf('Indexed %d/%d objects', min($done + $chunk, self::OBJECTS), self::OBJECTS));
        }
        $output->writeln(sprintf('Indexed %d eContent objects into the tmp core', self::OBJECTS));

        return Command::SUCCESS;
    }
}
