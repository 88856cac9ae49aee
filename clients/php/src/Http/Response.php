<?php

declare(strict_types=1);

namespace CommerceJobs\Client\Http;

/** An HTTP response of the apiserver: its status code and body. */
final class Response
{
    public function __construct(public readonly int $status, public readonly string $body)
    {
    }

    public function isSuccess(): bool
    {
        return $this->status >= 200 && $this->status < 300;
    }

    /** @return array<string, mixed> */
    public function json(): array
    {
        $data = json_decode($this->body, true);
        if (!is_array($data)) {
            throw new \UnexpectedValueException(sprintf('the apiserver answered HTTP %d with a body that is not a JSON object', $this->status));
        }

        return $data;
    }
}
