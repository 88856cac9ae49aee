<?php

declare(strict_types=1);

namespace CommerceJobs\Client;

use CommerceJobs\Client\Config\Connection;
use CommerceJobs\Client\Exception\ApiException;
use CommerceJobs\Client\Exception\ConnectionException;
use CommerceJobs\Client\Exception\IdempotencyConflictException;
use CommerceJobs\Client\Exception\NotFoundException;
use CommerceJobs\Client\Exception\WaitTimeoutException;
use CommerceJobs\Client\Http\CurlTransport;
use CommerceJobs\Client\Http\Response;
use CommerceJobs\Client\Http\Transport;

/**
 * Creates, reads, waits for and cancels CommerceJobs of one namespace through the Kubernetes API.
 *
 * RBAC verbs on commercejobs.commercejobs.dev: create() needs `create` (and `get` for an idempotency key that
 * exists), get() `get`, wait() `get` and `watch`, cancel() `patch`.
 */
final class Client
{
    public const RESOURCE = 'commercejobs.commercejobs.dev';
    // One watch request lasts at most this long; the wait then watches again from where it was.
    private const WATCH_SECONDS = 300;
    private const BACKOFF_FIRST = 0.5;
    private const BACKOFF_MAX = 8.0;

    private readonly string $collection;

    public function __construct(private readonly Transport $transport, private readonly string $namespace)
    {
        $this->collection = sprintf('/apis/commercejobs.dev/v1alpha1/namespaces/%s/commercejobs', rawurlencode($namespace));
    }

    /**
     * In a pod: its ServiceAccount, in its namespace. Elsewhere: KUBECONFIG's (or ~/.kube/config's) current
     * context. `$namespace` overrides the namespace.
     */
    public static function fromEnvironment(?string $namespace = null): self
    {
        return self::forConnection(Connection::fromEnvironment(), $namespace);
    }

    public static function forConnection(Connection $connection, ?string $namespace = null): self
    {
        return new self(new CurlTransport($connection), $namespace ?? $connection->namespace);
    }

    public function getNamespace(): string
    {
        return $this->namespace;
    }

    /**
     * Creates the CommerceJob (JMS: persist and flush). With an idempotency key, a job of that key that exists is
     * returned instead, when it is the same job; otherwise an IdempotencyConflictException names the fields that
     * differ. The apiserver's refusals are exceptions: InvalidFieldException (schema and CEL rules; `getField()`),
     * UnknownFieldException (a field the installed CRD lacks), ForbiddenException (RBAC: `getVerb()`,
     * `getResource()`).
     */
    public function create(Job $job): CommerceJob
    {
        $body = Manifest::build($job);
        $response = $this->call('POST', '', json_encode($body, JSON_THROW_ON_ERROR | JSON_UNESCAPED_SLASHES), 'create');
        if ($response->status === 409 && $job->getIdempotencyKey() !== null) {
            $created = $this->existingFor($job, $body);
        } else {
            $created = new CommerceJob($this->decode($response, 'create'));
        }
        $job->markCreated($created->getName());

        return $created;
    }

    /** The CommerceJob as it is now (JMS: `$em->refresh($job)`). */
    public function get(string $name): CommerceJob
    {
        return new CommerceJob($this->decode($this->call('GET', '/' . rawurlencode($name), null, 'get'), 'get'));
    }

    /**
     * Waits until the job is in a final state and returns it (Finished, Failed, Terminated, Incomplete, Canceled),
     * following it with a watch. A job that the operator refused to run is an exception: CommandNotAllowedException
     * (outside the allowlist) or JobRefusedException (e.g. InvalidSpec), with the field that the refusal names.
     *
     * @throws WaitTimeoutException when it is not final after `$timeoutSeconds`
     */
    public function wait(string $name, float $timeoutSeconds = 3600.0): CommerceJob
    {
        $deadline = microtime(true) + $timeoutSeconds;
        $job = $this->get($name);
        $version = $job->getResourceVersion();
        $backoff = self::BACKOFF_FIRST;
        while (!$job->isInFinalState()) {
            $remaining = $deadline - microtime(true);
            if ($remaining <= 0) {
                throw new WaitTimeoutException(sprintf(
                    'the CommerceJob %s is still %s after %.0f s',
                    $name,
                    $job->getState(),
                    $timeoutSeconds,
                ), $job);
            }
            try {
                [$job, $version] = $this->watchUntilFinal($name, $job, $version, (int) max(1, min(self::WATCH_SECONDS, ceil($remaining))));
                $backoff = self::BACKOFF_FIRST;
            } catch (WatchExpired) {
                $job = $this->get($name);  // the watch's resourceVersion is too old: start again from now
                $version = $job->getResourceVersion();
            } catch (ConnectionException $e) {
                // The apiserver is away for a moment (a restart, a broken connection): try again, a little later each time.
                if (microtime(true) + $backoff >= $deadline) {
                    throw $e;
                }
                usleep((int) ($backoff * 1e6));
                $backoff = min(self::BACKOFF_MAX, $backoff * 2);
            }
        }

        return JobRefusal::check($job);
    }

    /**
     * Waits for the job, then for each depending job that it created, and theirs, depth first. Returns every job of
     * the tree that exists, the job first; dependents that were never created (the job did not succeed) are listed
     * only in their parent's getDependents(), as Canceled.
     *
     * @return list<CommerceJob>
     */
    public function waitTree(string $name, float $timeoutSeconds = 3600.0): array
    {
        $deadline = microtime(true) + $timeoutSeconds;
        $job = $this->wait($name, $timeoutSeconds);
        $tree = [$job];
        foreach ($job->getDependents() as $dependent) {
            if ($dependent['state'] === CommerceJob::STATE_CANCELED) {
                continue;  // never created, and never will be
            }
            array_push($tree, ...$this->waitTree($dependent['name'], max(1.0, $deadline - microtime(true))));
        }

        return $tree;
    }

    /**
     * Cancels the job (`spec.cancel: true`): a running attempt is stopped, and the job becomes Canceled; its
     * depending jobs are never created. JMS could cancel only jobs that had not started.
     */
    public function cancel(string $name): CommerceJob
    {
        $patch = json_encode(['spec' => ['cancel' => true]], JSON_THROW_ON_ERROR);
        $response = $this->call('PATCH', '/' . rawurlencode($name), $patch, 'patch', 'application/merge-patch+json');

        return new CommerceJob($this->decode($response, 'patch'));
    }

    /**
     * The job of an idempotency key that exists already: returned when it is the same job.
     *
     * @param array<string, mixed> $body what create() sent
     */
    private function existingFor(Job $job, array $body): CommerceJob
    {
        $name = $body['metadata']['name'];
        try {
            $existing = $this->get($name);
        } catch (NotFoundException) {
            // Deleted between the two calls (retention, or by hand): the key is free again.
            $response = $this->call('POST', '', json_encode($body, JSON_THROW_ON_ERROR | JSON_UNESCAPED_SLASHES), 'create');

            return new CommerceJob($this->decode($response, 'create'));
        }
        $key = (string) $job->getIdempotencyKey();
        if (($existing->getAnnotations()[Manifest::KEY_ANNOTATION] ?? null) !== $key) {
            throw new IdempotencyConflictException(sprintf(
                'a CommerceJob named %s exists, but it was not created with the idempotency key "%s"',
                $name,
                $key,
            ), $existing, []);
        }
        $differences = Manifest::differences($body['spec'], $existing->getSpec());
        if ($differences !== []) {
            throw new IdempotencyConflictException(sprintf(
                'the CommerceJob %s of the idempotency key "%s" exists with another %s: it is left as it is; use '
                . 'another key for another job',
                $name,
                $key,
                implode(', ', $differences),
            ), $existing, $differences);
        }

        return $existing;
    }

    /**
     * One watch request on the job, from `$version`, until it is final or the request ends.
     *
     * @return array{0: CommerceJob, 1: ?string}
     */
    private function watchUntilFinal(string $name, CommerceJob $job, ?string $version, int $seconds): array
    {
        $query = [
            'watch' => 'true',
            'fieldSelector' => 'metadata.name=' . $name,
            'timeoutSeconds' => $seconds,
            'allowWatchBookmarks' => 'true',
        ];
        if ($version !== null) {
            $query['resourceVersion'] = $version;
        }
        $onLine = function (string $line) use (&$job, &$version, $name): bool {
            $event = json_decode($line, true);
            if (!is_array($event) || !is_array($event['object'] ?? null)) {
                throw new \UnexpectedValueException("the watch of $name sent a line that is not an event");
            }
            $object = $event['object'];
            $version = $object['metadata']['resourceVersion'] ?? $version;
            switch ($event['type'] ?? '') {
                case 'ADDED':
                case 'MODIFIED':
                    $job = new CommerceJob($object);

                    return !$job->isInFinalState();
                case 'DELETED':
                    throw new NotFoundException("the CommerceJob $name was deleted while it was waited for", 404, 'NotFound');
                case 'ERROR':
                    if (($object['code'] ?? 0) === 410) {
                        throw new WatchExpired();
                    }
                    throw ApiErrors::fromResponse((int) ($object['code'] ?? 500), (string) json_encode($object), 'watch', self::RESOURCE);
                default:  // BOOKMARK: only the resourceVersion moves on
                    return true;
            }
        };
        $refused = $this->transport->stream($this->collection, $query, $onLine, $seconds);
        if ($refused !== null) {
            throw ApiErrors::fromResponse($refused->status, $refused->body, 'watch', self::RESOURCE);
        }

        return [$job, $version];
    }

    private function call(string $method, string $path, ?string $body, string $verb, string $contentType = 'application/json'): Response
    {
        // Strict field validation: a field that the installed CRD lacks is an error, not silently dropped.
        $query = $method === 'GET' ? [] : ['fieldValidation' => 'Strict'];
        $response = $this->transport->request($method, $this->collection . $path, $query, $body, $contentType);
        if (!$response->isSuccess() && !($verb === 'create' && $response->status === 409)) {
            throw ApiErrors::fromResponse($response->status, $response->body, $verb, self::RESOURCE);
        }

        return $response;
    }

    /** @return array<string, mixed> */
    private function decode(Response $response, string $verb): array
    {
        if (!$response->isSuccess()) {
            throw ApiErrors::fromResponse($response->status, $response->body, $verb, self::RESOURCE);
        }

        return $response->json();
    }
}

