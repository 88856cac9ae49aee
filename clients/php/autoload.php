<?php

declare(strict_types=1);

// For a shop that does not install the client with Composer: `require 'path/to/clients/php/autoload.php';`
// registers the same PSR-4 mapping that composer.json declares.
spl_autoload_register(static function (string $class): void {
    $prefix = 'CommerceJobs\\Client\\';
    if (!str_starts_with($class, $prefix)) {
        return;
    }
    $file = __DIR__ . '/src/' . str_replace('\\', '/', substr($class, strlen($prefix))) . '.php';
    if (is_file($file)) {
        require_once $file;
    }
});
