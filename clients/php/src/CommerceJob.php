<?php

declare(strict_types=1);

namespace CommerceJobs\Client;

/**
 * A CommerceJob as the apiserver returned it: its name, spec and status, read-only. The states are
 * JMSJobQueueBundle's, capitalised (JMS `finished` = `Finished`).
 */
final class CommerceJob
{
    public const STATE_PENDING = 'Pending';
    public const STATE_RUNNING = 'Running';
    public const STATE_FINISHED = 'Finished';
    public const STATE_FAILED = 'Failed';
    public const STATE_TERMINATED = 'Terminated';
    public const STATE_INCOMPLETE = 'Incomplete';
    public const STATE_CANCELED = 'Canceled';
    public const FINAL_STATES = [
        self::STATE_FINISHED, self::STATE_FAILED, self::STATE_TERMINATED, self::STATE_INCOMPLETE, self::STATE_CANCELED,
    ];

    /** @param array<string, mixed> $object the CommerceJob object (apiVersion, kind, metadata, spec, status) */
    public function __construct(private readonly array $object)
    {
        if (!is_string($object['metadata']['name'] ?? null)) {
            throw new \InvalidArgumentException('not a CommerceJob object: it has no metadata.name');
        }
    }

    public function getName(): string
    {
        return $this->object['metadata']['name'];
    }

    public function getNamespace(): ?string
    {
        return $this->string($this->object['metadata']['namespace'] ?? null);
    }

    public function getUid(): ?string
    {
        return $this->string($this->object['metadata']['uid'] ?? null);
    }

    public function getResourceVersion(): ?string
    {
        return $this->string($this->object['metadata']['resourceVersion'] ?? null);
    }

    /** @return array<string, string> */
    public function getAnnotations(): array
    {
        $annotations = $this->object['metadata']['annotations'] ?? [];

        return is_array($annotations) ? $annotations : [];
    }

    /** @return array<string, mixed> */
    public function getSpec(): array
    {
        $spec = $this->object['spec'] ?? [];

        return is_array($spec) ? $spec : [];
    }

    public function getCommand(): ?string
    {
        return $this->string($this->getSpec()['command'] ?? null);
    }

    /** @return list<string> */
    public function getArgs(): array
    {
        $params = $this->getSpec()['params'] ?? [];

        return is_array($params) ? array_values($params) : [];
    }

    /** Pending until the operator has seen the job. */
    public function getState(): string
    {
        return $this->string($this->status()['state'] ?? null) ?? self::STATE_PENDING;
    }

    /** Why the job is in its state, in one CamelCase word, e.g. CommandNotAllowed. */
    public function getReason(): ?string
    {
        return $this->string($this->status()['reason'] ?? null);
    }

    public function getMessage(): ?string
    {
        return $this->string($this->status()['message'] ?? null);
    }

    public function getExitCode(): ?int
    {
        $code = $this->status()['exitCode'] ?? null;

        return is_int($code) ? $code : null;
    }

    public function getAttempts(): int
    {
        $attempts = $this->status()['attempts'] ?? 0;

        return is_int($attempts) ? $attempts : 0;
    }

    /** The last bytes of the command's output (stdout and stderr), kept after the pod is gone. */
    public function getOutput(): string
    {
        return $this->string($this->status()['output'] ?? null) ?? '';
    }

    /**
     * The depending jobs (`spec.dependingJobs`) as the status lists them, the whole tree: each with its name and
     * state (`Created` once it exists; `Canceled` when it never will, because this job did not succeed).
     *
     * @return list<array{name: string, state: string}>
     */
    public function getDependents(): array
    {
        $dependents = [];
        foreach ((array) ($this->status()['dependents'] ?? []) as $entry) {
            if (is_array($entry) && is_string($entry['name'] ?? null)) {
                $dependents[] = ['name' => $entry['name'], 'state' => (string) ($entry['state'] ?? '')];
            }
        }

        return $dependents;
    }

    /** @return array<string, mixed>|null the status condition of this type, e.g. Succeeded */
    public function getCondition(string $type = 'Succeeded'): ?array
    {
        foreach ((array) ($this->status()['conditions'] ?? []) as $condition) {
            if (is_array($condition) && ($condition['type'] ?? null) === $type) {
                return $condition;
            }
        }

        return null;
    }

    public function isInFinalState(): bool
    {
        return in_array($this->getState(), self::FINAL_STATES, true);
    }

    public function isFinished(): bool
    {
        return $this->getState() === self::STATE_FINISHED;
    }

    /** @return array<string, mixed> the whole object, as the apiserver returned it */
    public function toArray(): array
    {
        return $this->object;
    }

    /** @return array<string, mixed> */
    private function status(): array
    {
        $status = $this->object['status'] ?? [];

        return is_array($status) ? $status : [];
    }

    private function string(mixed $value): ?string
    {
        return is_string($value) ? $value : null;
    }
}
