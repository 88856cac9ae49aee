<?php

declare(strict_types=1);

namespace CommerceJobs\Client\Http;

use CommerceJobs\Client\Config\Connection;
use CommerceJobs\Client\Exception\ConnectionException;

/** The Transport with ext-curl: one handle, so that the TLS connection is kept between requests. */
final class CurlTransport implements Transport
{
    private const CONNECT_TIMEOUT = 10;
    private const REQUEST_TIMEOUT = 60;
    // A watch may stay silent until its server-side timeout; the client's own limit is a little later.
    private const STREAM_GRACE = 15;
    private const USER_AGENT = 'commerce-jobs-php/0.1';

    private ?\CurlHandle $handle = null;

    public function __construct(private readonly Connection $connection)
    {
        if (!extension_loaded('curl')) {
            throw new \LogicException('the commerce-jobs client needs ext-curl (Debian: apt-get install php8.2-curl)');
        }
    }

    public function request(string $method, string $path, array $query = [], ?string $body = null, string $contentType = 'application/json'): Response
    {
        $ch = $this->handle($path, $query);
        $headers = $this->headers();
        curl_setopt($ch, CURLOPT_CUSTOMREQUEST, $method);
        if ($body !== null) {
            curl_setopt($ch, CURLOPT_POSTFIELDS, $body);
            $headers[] = 'Content-Type: ' . $contentType;
            $headers[] = 'Expect:';  // no "100-continue" round trip before a body of more than 1 KiB
        }
        curl_setopt_array($ch, [
            CURLOPT_HTTPHEADER => $headers,
            CURLOPT_RETURNTRANSFER => true,
            CURLOPT_TIMEOUT => self::REQUEST_TIMEOUT,
        ]);
        $result = curl_exec($ch);
        if (!is_string($result)) {
            throw $this->connectionError($ch, $method, $path);
        }

        return new Response((int) curl_getinfo($ch, CURLINFO_RESPONSE_CODE), $result);
    }

    public function stream(string $path, array $query, callable $onLine, int $timeoutSeconds): ?Response
    {
        $ch = $this->handle($path, $query);
        $status = 0;
        $buffer = '';
        $errorBody = '';
        $stopped = false;
        $failure = null;
        curl_setopt_array($ch, [
            CURLOPT_HTTPHEADER => $this->headers(),
            CURLOPT_TIMEOUT => $timeoutSeconds + self::STREAM_GRACE,
            CURLOPT_HEADERFUNCTION => static function ($ch, string $header) use (&$status): int {
                if (preg_match('#^HTTP/\S+\s+(\d{3})#', $header, $m)) {
                    $status = (int) $m[1];
                }

                return strlen($header);
            },
            CURLOPT_WRITEFUNCTION => static function ($ch, string $chunk) use (&$status, &$buffer, &$errorBody, &$stopped, &$failure, $onLine): int {
                if ($status !== 200) {
                    $errorBody .= $chunk;

                    return strlen($chunk);
                }
                $buffer .= $chunk;
                while (($end = strpos($buffer, "\n")) !== false) {
                    $line = substr($buffer, 0, $end);
                    $buffer = substr($buffer, $end + 1);
                    if (trim($line) === '') {
                        continue;
                    }
                    try {
                        $continue = $onLine($line);
                    } catch (\Throwable $e) {
                        // Thrown from inside curl: kept, the transfer aborted, and rethrown once curl returned.
                        $failure = $e;
                        $continue = false;
                    }
                    if (!$continue) {
                        $stopped = true;

                        return 0;  // aborts the transfer
                    }
                }

                return strlen($chunk);
            },
        ]);
        $ok = curl_exec($ch);
        if ($failure !== null) {
            $this->close();
            throw $failure;
        }
        if ($stopped) {
            $this->close();  // the aborted connection cannot be reused

            return null;
        }
        if ($ok === false) {
            throw $this->connectionError($ch, 'GET', $path);
        }
        if ($status !== 200) {
            return new Response($status, $errorBody);
        }

        return null;
    }

    /** @param array<string, string|int> $query */
    private function handle(string $path, array $query): \CurlHandle
    {
        if ($this->handle === null) {
            $handle = curl_init();
            if ($handle === false) {
                throw new ConnectionException('curl_init() failed');
            }
            $this->handle = $handle;
        } else {
            curl_reset($this->handle);
        }
        $url = $this->connection->server . $path . ($query !== [] ? '?' . http_build_query($query) : '');
        $c = $this->connection;
        $options = [
            CURLOPT_URL => $url,
            CURLOPT_PROTOCOLS => CURLPROTO_HTTPS | CURLPROTO_HTTP,
            CURLOPT_FOLLOWLOCATION => false,
            CURLOPT_CONNECTTIMEOUT => self::CONNECT_TIMEOUT,
            CURLOPT_USERAGENT => self::USER_AGENT,
            CURLOPT_SSL_VERIFYPEER => !$c->insecureSkipTlsVerify,
            CURLOPT_SSL_VERIFYHOST => $c->insecureSkipTlsVerify ? 0 : 2,
        ];
        if ($c->caFile !== null) {
            $options[CURLOPT_CAINFO] = $c->caFile;
        }
        if ($c->caData !== null) {
            $options[CURLOPT_CAINFO_BLOB] = $c->caData;
        }
        if ($c->certData !== null && $c->keyData !== null) {
            $options[CURLOPT_SSLCERT_BLOB] = $c->certData;
            $options[CURLOPT_SSLCERTTYPE] = 'PEM';
            $options[CURLOPT_SSLKEY_BLOB] = $c->keyData;
            $options[CURLOPT_SSLKEYTYPE] = 'PEM';
        }
        curl_setopt_array($this->handle, $options);

        return $this->handle;
    }

    /** @return list<string> */
    private function headers(): array
    {
        $headers = ['Accept: application/json'];
        $token = $this->connection->currentToken();
        if ($token !== null && $token !== '') {
            $headers[] = 'Authorization: Bearer ' . $token;
        }

        return $headers;
    }

    private function connectionError(\CurlHandle $ch, string $method, string $path): ConnectionException
    {
        $error = sprintf('%s %s%s: %s (curl error %d)', $method, $this->connection->server, $path, curl_error($ch), curl_errno($ch));
        $this->close();

        return new ConnectionException($error);
    }

    private function close(): void
    {
        if ($this->handle !== null) {
            curl_close($this->handle);
            $this->handle = null;
        }
    }
}
