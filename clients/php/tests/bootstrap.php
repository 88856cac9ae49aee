<?php

declare(strict_types=1);

error_reporting(E_ALL);
// Every notice or warning is an error in the tests (but those that `@` silences, as the client means them to be).
set_error_handler(static function (int $severity, string $message, string $file, int $line): bool {
    if (!(error_reporting() & $severity)) {
        return false;
    }
    throw new ErrorException($message, 0, $severity, $file, $line);
});
require __DIR__ . '/../autoload.php';
spl_autoload_register(static function (string $class): void {
    $prefix = 'CommerceJobs\\Client\\Tests\\';
    if (str_starts_with($class, $prefix)) {
        require_once __DIR__ . '/' . str_replace('\\', '/', substr($class, strlen($prefix))) . '.php';
    }
});
