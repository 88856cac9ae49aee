<?php

declare(strict_types=1);

namespace CommerceJobs\Client\Config;

use CommerceJobs\Client\Exception\ConfigurationException;

/**
 * A kubeconfig file's context as a Connection: the cluster's server and CA, and the user's token (or token file, or
 * client certificate). exec plugins and auth providers are not supported: give the client a token.
 */
final class Kubeconfig
{
    public static function load(string $path, ?string $context = null): Connection
    {
        $text = @file_get_contents($path);
        if ($text === false) {
            throw new ConfigurationException("cannot read the kubeconfig $path");
        }
        try {
            $config = KubeconfigYaml::parse($text);
        } catch (\InvalidArgumentException $e) {
            throw new ConfigurationException("$path: {$e->getMessage()}", 0, $e);
        }

        return self::connection($config, dirname((string) realpath($path)), $context, $path);
    }

    /**
     * @param array<mixed> $config  the parsed kubeconfig
     * @param string       $baseDir relative file paths in it are relative to its directory (as kubectl's)
     */
    public static function connection(array $config, string $baseDir, ?string $context = null, string $path = 'kubeconfig'): Connection
    {
        $context ??= self::str($config['current-context'] ?? null);
        if ($context === null || $context === '') {
            throw new ConfigurationException("$path has no current-context");
        }
        $ctx = self::named($config, 'contexts', 'context', $context, $path);
        $clusterName = self::str($ctx['cluster'] ?? null) ?? '';
        $userName = self::str($ctx['user'] ?? null) ?? '';
        $cluster = self::named($config, 'clusters', 'cluster', $clusterName, $path);
        $user = $userName !== '' ? self::named($config, 'users', 'user', $userName, $path) : [];

        $server = self::str($cluster['server'] ?? null);
        if ($server === null || $server === '') {
            throw new ConfigurationException("$path: the cluster $clusterName has no server");
        }
        foreach (['exec', 'auth-provider', 'username', 'password'] as $unsupported) {
            if (isset($user[$unsupported])) {
                throw new ConfigurationException(sprintf(
                    '%s: the user %s authenticates with %s, which this client does not support; use a token '
                    . '(e.g. `kubectl create token <service-account>` in the user\'s `token`)',
                    $path,
                    $userName,
                    $unsupported,
                ));
            }
        }
        $file = static fn (mixed $p): ?string => ($p = self::str($p)) === null || $p === ''
            ? null : (str_starts_with($p, '/') ? $p : $baseDir . '/' . $p);
        $certData = self::data($user, 'client-certificate', $file, $path);
        $keyData = self::data($user, 'client-key', $file, $path);

        return new Connection(
            server: rtrim($server, '/'),
            namespace: self::str($ctx['namespace'] ?? null) ?: 'default',
            token: self::str($user['token'] ?? null),
            tokenFile: $file($user['tokenFile'] ?? null),
            caFile: $file($cluster['certificate-authority'] ?? null),
            caData: self::base64($cluster['certificate-authority-data'] ?? null, 'certificate-authority-data', $path),
            certData: $certData,
            keyData: $keyData,
            insecureSkipTlsVerify: in_array($cluster['insecure-skip-tls-verify'] ?? false, [true, 'true'], true),
        );
    }

    /**
     * @param array<mixed> $config
     *
     * @return array<mixed>
     */
    private static function named(array $config, string $list, string $field, string $name, string $path): array
    {
        foreach ((array) ($config[$list] ?? []) as $entry) {
            if (is_array($entry) && self::str($entry['name'] ?? null) === $name) {
                return is_array($entry[$field] ?? null) ? $entry[$field] : [];
            }
        }
        throw new ConfigurationException("$path has no $field named \"$name\" in $list");
    }

    /**
     * A PEM from `<field>-data` (base64) or from the file `<field>`.
     *
     * @param array<mixed> $user
     */
    private static function data(array $user, string $field, \Closure $file, string $path): ?string
    {
        $data = self::base64($user["$field-data"] ?? null, "$field-data", $path);
        if ($data !== null) {
            return $data;
        }
        $name = $file($user[$field] ?? null);
        if ($name === null) {
            return null;
        }
        $pem = @file_get_contents($name);
        if ($pem === false) {
            throw new ConfigurationException("$path: cannot read $field $name");
        }

        return $pem;
    }

    private static function base64(mixed $value, string $field, string $path): ?string
    {
        $value = self::str($value);
        if ($value === null || $value === '') {
            return null;
        }
        $decoded = base64_decode($value, true);
        if ($decoded === false) {
            throw new ConfigurationException("$path: $field is not base64");
        }

        return $decoded;
    }

    private static function str(mixed $value): ?string
    {
        return is_string($value) || is_int($value) ? (string) $value : null;
    }
}
