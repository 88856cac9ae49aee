<?php

declare(strict_types=1);

namespace DemoShop\Command;

use Symfony\Component\Console\Attribute\AsCommand;
use Symfony\Component\Console\Command\Command;
use Symfony\Component\Console\Input\InputInterface;
use Symfony\Component\Console\Input\InputOption;
use Symfony\Component\Console\Output\OutputInterface;

/**
 * A long job that prints its progress every second and stops cleanly on SIGTERM or SIGINT, as the platform's job
 * runner does with pcntl. Like many real workers it exits 0 after such a stop (unless told otherwise), so whoever
 * stopped it cannot learn why from the exit code.
 */
#[AsCommand(name: 'shop:slow', description: 'Works for some seconds, printing progress; stops cleanly on SIGTERM')]
final class SlowCommand extends Command
{
    private ?int $signal = null;

    protected function configure(): void
    {
        $this
            ->addOption('seconds', null, InputOption::VALUE_REQUIRED, 'How long to work', '60')
            ->addOption('exit-code-on-signal', null, InputOption::VALUE_REQUIRED, 'Exit code after a signal', '0');
    }

    protected function execute(InputInterface $input, OutputInterface $output): int
    {
        $seconds = max(0, (int) $input->getOption('seconds'));
        pcntl_async_signals(true);
        foreach ([SIGTERM, SIGINT] as $signal) {
            pcntl_signal($signal, function (int $received): void {
                $this->signal = $received;
            });
        }
        $output->writeln(sprintf('Working for %d seconds (pid %d)', $seconds, getmypid()));
        $started = microtime(true);
        for ($second = 1; $second <= $seconds; ++$second) {
            sleep(1); // returns early when a signal arrives
            if ($this->signal !== null) {
                $name = $this->signal === SIGTERM ? 'SIGTERM' : 'SIGINT';
                $output->writeln(sprintf(
                    'Received %s after %.1f seconds: stopping cleanly',
                    $name,
                    microtime(true) - $started,
                ));

                return (int) $input->getOption('exit-code-on-signal');
            }
            $output->writeln(sprintf('Progress: %d/%d seconds', $second, $seconds));
        }
        $output->writeln('Done');

        return Command::SUCCESS;
    }
}
