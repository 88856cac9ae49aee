<?php

declare(strict_types=1);

namespace DemoShop\Command;

use Symfony\Component\Console\Attribute\AsCommand;
use Symfony\Component\Console\Command\Command;
use Symfony\Component\Console\Input\InputInterface;
use Symfony\Component\Console\Output\ConsoleOutputInterface;
use Symfony\Component\Console\Output\OutputInterface;

/** Resends lost orders to an ERP that is never reachable here: the demo's failing job (exit code 3). */
#[AsCommand(name: 'silver:erp:resend-orders', description: 'Resends lost orders to the ERP (fails: no ERP here)')]
final class ResendOrdersCommand extends Command
{
    public const EXIT_ERP_UNREACHABLE = 3;

    protected function execute(InputInterface $input, OutputInterface $output): int
    {
        $errors = $output instanceof ConsoleOutputInterface ? $output->getErrorOutput() : $output;
        $output->writeln('Resending 3 lost orders to the ERP...');
        $errors->writeln('ERP request failed: connection refused (erp.demo-shop.invalid:443); 3 orders stay lost');

        return self::EXIT_ERP_UNREACHABLE;
    }
}
