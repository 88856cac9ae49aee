<?php

declare(strict_types=1);

namespace CommerceJobs\Client;

/**
 * A job that is created once its parent succeeded (an item of the parent's `spec.dependingJobs`). It runs in the
 * parent's image, queue and runtime; its CommerceJob is named `<parent>-<name>`. At most 20 per job, 3 levels deep.
 */
final class DependingJob
{
    private ?int $maxRuntimeSeconds = null;
    private ?int $maxRetries = null;
    private ?string $label = null;
    private ?string $description = null;
    /** @var array<string, string> */
    private array $podAnnotations = [];
    /** @var list<DependingJob> */
    private array $dependingJobs = [];

    /**
     * @param string       $name    unique among its siblings (lowercase letters, digits and '-')
     * @param list<string> $args
     */
    public function __construct(private string $name, private string $command, private array $args = [])
    {
        if (!array_is_list($args)) {
            throw new \InvalidArgumentException('$args must be a list of strings (one argv item each)');
        }
    }

    /** 0: the parent's value (a depending job cannot remove a limit that its parent has). */
    public function setMaxRuntime(int $seconds): self
    {
        $this->maxRuntimeSeconds = $seconds === 0 ? null : $seconds;

        return $this;
    }

    public function setMaxRetries(int $retries): self
    {
        $this->maxRetries = $retries;

        return $this;
    }

    public function setLabel(string $label): self
    {
        $this->label = $label;

        return $this;
    }

    public function setDescription(string $description): self
    {
        $this->description = $description;

        return $this;
    }

    /** @param array<string, string> $annotations added to the parent's pod annotations */
    public function setPodAnnotations(array $annotations): self
    {
        $this->podAnnotations = $annotations;

        return $this;
    }

    public function addDependingJob(DependingJob $job): self
    {
        $this->dependingJobs[] = $job;

        return $this;
    }

    /** @return array<string, mixed> the item of spec.dependingJobs */
    public function toSpec(): array
    {
        $item = ['name' => $this->name, 'command' => $this->command];
        if ($this->args !== []) {
            $item['params'] = $this->args;
        }
        $optional = [
            'label' => $this->label,
            'description' => $this->description,
            'maxRuntimeSeconds' => $this->maxRuntimeSeconds,
            'maxRetries' => $this->maxRetries,
            'podAnnotations' => $this->podAnnotations !== [] ? $this->podAnnotations : null,
            'dependingJobs' => $this->dependingJobs !== []
                ? array_map(static fn (DependingJob $j): array => $j->toSpec(), $this->dependingJobs)
                : null,
        ];

        return $item + array_filter($optional, static fn (mixed $v): bool => $v !== null);
    }
}
