<?php

declare(strict_types=1);

namespace CommerceJobs\Client\Config;

use CommerceJobs\Client\Exception\ConfigurationException;

/**
 * Where the apiserver is and how to authenticate: from the pod's ServiceAccount, or from a kubeconfig file.
 * Nothing secret is ever part of an exception message.
 */
final class Connection
{
    public const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

    /**
     * @param string      $server     e.g. https://10.96.0.1:443
     * @param string|null $token      a bearer token (kubeconfig `token`)
     * @param string|null $tokenFile  a file that holds the token, read at every request: a pod's projected token
     *                                is rotated by the kubelet
     * @param string|null $caFile     the cluster's CA (PEM file); null with $caData null: the system's CAs
     * @param string|null $caData     the cluster's CA (PEM)
     * @param string|null $certData   a client certificate (PEM), with $keyData
     * @param string|null $keyData    its key (PEM)
     */
    public function __construct(
        public readonly string $server,
        public readonly string $namespace,
        public readonly ?string $token = null,
        public readonly ?string $tokenFile = null,
        public readonly ?string $caFile = null,
        public readonly ?string $caData = null,
        public readonly ?string $certData = null,
        public readonly ?string $keyData = null,
        public readonly bool $insecureSkipTlsVerify = false,
    ) {
    }

    /**
     * In a pod: the ServiceAccount's token, CA and namespace, and the apiserver that KUBERNETES_SERVICE_HOST and
     * KUBERNETES_SERVICE_PORT name (as client-go's rest.InClusterConfig).
     *
     * @param array<string, string> $env
     */
    public static function inCluster(?array $env = null, string $directory = self::SERVICE_ACCOUNT_DIR): self
    {
        $env ??= getenv();
        $host = $env['KUBERNETES_SERVICE_HOST'] ?? '';
        $port = $env['KUBERNETES_SERVICE_PORT'] ?? '';
        if ($host === '' || $port === '') {
            throw new ConfigurationException('not in a pod: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set');
        }
        $tokenFile = $directory . '/token';
        if (!is_readable($tokenFile)) {
            throw new ConfigurationException(
                "no ServiceAccount token at $tokenFile: the pod has automountServiceAccountToken: false, or no ServiceAccount",
            );
        }
        $namespace = is_readable($directory . '/namespace') ? trim((string) file_get_contents($directory . '/namespace')) : '';
        $host = str_contains($host, ':') ? "[$host]" : $host;  // an IPv6 address

        return new self(
            server: "https://$host:$port",
            namespace: $namespace !== '' ? $namespace : 'default',
            tokenFile: $tokenFile,
            caFile: is_readable($directory . '/ca.crt') ? $directory . '/ca.crt' : null,
        );
    }

    /**
     * The pod's ServiceAccount when the client runs in a pod; otherwise the kubeconfig file that KUBECONFIG names
     * (its first file), or ~/.kube/config.
     */
    public static function fromEnvironment(): self
    {
        $env = getenv();
        if (($env['KUBERNETES_SERVICE_HOST'] ?? '') !== '' && is_readable(self::SERVICE_ACCOUNT_DIR . '/token')) {
            return self::inCluster($env);
        }
        $paths = array_values(array_filter(explode(PATH_SEPARATOR, $env['KUBECONFIG'] ?? '')));
        if ($paths === []) {
            $home = $env['HOME'] ?? '';
            if ($home === '') {
                throw new ConfigurationException('neither a pod (no ServiceAccount token) nor a kubeconfig: set KUBECONFIG');
            }
            $paths = [$home . '/.kube/config'];
        }
        foreach ($paths as $path) {
            if (is_file($path)) {
                return Kubeconfig::load($path);
            }
        }
        throw new ConfigurationException(sprintf(
            'neither a pod (no ServiceAccount token at %s) nor a kubeconfig (%s does not exist)',
            self::SERVICE_ACCOUNT_DIR,
            implode(', ', $paths),
        ));
    }

    /** A copy for another namespace. */
    public function withNamespace(string $namespace): self
    {
        return new self(
            $this->server, $namespace, $this->token, $this->tokenFile, $this->caFile, $this->caData, $this->certData,
            $this->keyData, $this->insecureSkipTlsVerify,
        );
    }

    /** The bearer token of the next request, if this connection uses one. */
    public function currentToken(): ?string
    {
        if ($this->tokenFile !== null) {
            $token = @file_get_contents($this->tokenFile);
            if ($token === false) {
                throw new ConfigurationException("cannot read the token file {$this->tokenFile}");
            }

            return trim($token);
        }

        return $this->token;
    }
}
