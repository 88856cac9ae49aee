<?php

declare(strict_types=1);

namespace CommerceJobs\Client\Http;

use CommerceJobs\Client\Exception\ConnectionException;

/** The HTTP calls that the client makes to the apiserver. */
interface Transport
{
    /**
     * @param array<string, string|int> $query
     *
     * @throws ConnectionException when no answer came
     */
    public function request(string $method, string $path, array $query = [], ?string $body = null, string $contentType = 'application/json'): Response;

    /**
     * A watch: `$onLine` gets each line (one event) as it arrives and returns false to end the watch early. Returns
     * null when the watch ended (by `$onLine`, or by the server at its timeoutSeconds); the apiserver's answer when
     * it refused the watch.
     *
     * @param array<string, string|int> $query
     * @param callable(string): bool    $onLine
     *
     * @throws ConnectionException when the connection failed or broke
     */
    public function stream(string $path, array $query, callable $onLine, int $timeoutSeconds): ?Response;
}
