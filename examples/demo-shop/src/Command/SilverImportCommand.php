<?php

declare(strict_types=1);

namespace DemoShop\Command;

use Symfony\Component\Console\Attribute\AsCommand;
use Symfony\Component\Console\Command\Command;
use Symfony\Component\Console\Input\InputArgument;
use Symfony\Component\Console\Input\InputInterface;
use Symfony\Component\Console\Output\ConsoleOutputInterface;
use Symfony\Component\Console\Output\OutputInterface;

/** The platform's "Import from eZ" job (`silver:import tmp`): the first job of the import pipeline. */
#[AsCommand(name: 'silver:import', description: 'Imports products and categories from the remote system')]
final class SilverImportCommand extends Command
{
    private const TABLES = ['tmp', 'live'];
    private const PRODUCTS = 1250;
    private const CATEGORIES = 48;

    protected function configure(): void
    {
        $this->addArgument('table', InputArgument::REQUIRED, 'The tables to import into: "tmp" (staging) or "live"');
    }

    protected function execute(InputInterface $input, OutputInterface $output): int
    {
        $table = (string) $input->getArgument('table');
        if (!in_array($table, self::TABLES, true)) {
            $errors = $output instanceof ConsoleOutputInterface ? $output->getErrorOutput() : $output;
            $errors->writeln(sprintf('Unknown table "%s": use one of %s', $table, implode(', ', self::TABLES)));

            return Command::INVALID;
        }
        $output->writeln(sprintf('Importing from remote system into %s tables...', $table));
        $output->writeln(sprintf('Fetched %d products in %d pages', self::PRODUCTS, intdiv(self::PRODUCTS, 250)));
        $output->writeln(sprintf('Fetched %d categories', self::CATEGORIES));
        $output->writeln(sprintf('Imported %d products, %d categories', self::PRODUCTS, self::CATEGORIES));

        return Command::SUCCESS;
    }
}
