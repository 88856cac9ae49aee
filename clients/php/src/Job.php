<?php

declare(strict_types=1);

namespace CommerceJobs\Client;

/**
 * A job to start, with JMSJobQueueBundle's words: `new Job('silver:import', ['tmp'], true, 'imports',
 * Job::PRIORITY_HIGH)`, then `$client->create($job)` where JMS had `$em->persist($job); $em->flush()`.
 *
 * It only describes the job; `Manifest::build()` turns it into a CommerceJob. Only what is set is sent, so a job
 * started from a template (`Job::fromTemplate()`) takes every other field from the template.
 */
final class Job
{
    // JMSJobQueueBundle's constants, with its meaning: a higher number starts sooner (CommerceJob's spec.priority).
    public const PRIORITY_LOW = -5;
    public const PRIORITY_DEFAULT = 0;
    public const PRIORITY_HIGH = 5;

    /** null only for a job from a template that does not override the template's command */
    private ?string $command;
    private ?string $template = null;
    private ?\DateTimeImmutable $executeAfter = null;
    private ?int $maxRuntimeSeconds = null;
    private ?int $maxRetries = null;
    private ?string $label = null;
    private ?string $description = null;
    private ?string $idempotencyKey = null;
    /** @var list<Job|CommerceJob|string> */
    private array $dependencies = [];
    /** @var list<DependingJob> */
    private array $dependingJobs = [];
    /** @var array<string, mixed> other fields of the CommerceJob's spec (image, env, resources ...) */
    private array $specFields = [];
    /** The CommerceJob's name once the job was created (as JMS's id after a flush). */
    private ?string $name = null;

    /**
     * @param string       $command   the console command, e.g. silver:import
     * @param list<string> $args      its arguments, one argv item each (never parsed by a shell)
     * @param bool         $confirmed JMS's unconfirmed ("new") jobs have no CommerceJob equivalent: false is refused
     * @param string|null  $queue     null: the operator's queue "default" (or the template's queue)
     * @param int|null     $priority  null: 0 (or the template's priority)
     */
    public function __construct(
        string $command,
        private array $args = [],
        bool $confirmed = true,
        private ?string $queue = null,
        private ?int $priority = null,
    ) {
        $this->command = $command;
        if (!$confirmed) {
            throw new \InvalidArgumentException(
                'unconfirmed jobs ($confirmed = false, JMS\'s state "new") do not exist for CommerceJobs: a job runs '
                . 'once created; build the whole graph first (addDependingJob) and create the job when it is complete',
            );
        }
        if (!array_is_list($args)) {
            throw new \InvalidArgumentException('$args must be a list of strings (one argv item each)');
        }
        foreach ($args as $i => $arg) {
            if (!is_string($arg)) {
                throw new \InvalidArgumentException(sprintf('$args[%d] must be a string, got %s', $i, get_debug_type($arg)));
            }
        }
    }

    /** JMS's static factory, same signature. @param list<string> $args */
    public static function create(
        string $command,
        array $args = [],
        bool $confirmed = true,
        ?string $queue = null,
        ?int $priority = null,
    ): self {
        return new self($command, $args, $confirmed, $queue, $priority);
    }

    /**
     * A job that runs a CommerceJobTemplate (the Back Office's configured jobs, `spec.templateRef`): it takes every
     * field that it does not set itself from the template. Setters called on it override the template's values.
     */
    public static function fromTemplate(string $template): self
    {
        $job = new self('');
        $job->command = null;
        $job->template = $template;

        return $job;
    }

    /** The queue (JMS: the constructor's only); for a template job, overrides the template's. */
    public function setQueue(string $queue): self
    {
        $this->queue = $queue;

        return $this;
    }

    /** The priority (JMS: the constructor's only); for a template job, overrides the template's. */
    public function setPriority(int $priority): self
    {
        $this->priority = $priority;

        return $this;
    }

    /** Earliest start (`spec.executeAfter`, sent in UTC). */
    public function setExecuteAfter(\DateTimeInterface $executeAfter): self
    {
        $this->executeAfter = \DateTimeImmutable::createFromInterface($executeAfter);

        return $this;
    }

    /** Seconds an attempt may run before it is stopped (`spec.maxRuntimeSeconds`); 0, as in JMS: no limit. */
    public function setMaxRuntime(int $seconds): self
    {
        if ($seconds < 0) {
            throw new \InvalidArgumentException('setMaxRuntime(): seconds must be >= 0 (0: no limit)');
        }
        $this->maxRuntimeSeconds = $seconds === 0 ? null : $seconds;

        return $this;
    }

    /** Retries after a Failed, Terminated or Incomplete attempt (`spec.maxRetries`). */
    public function setMaxRetries(int $retries): self
    {
        $this->maxRetries = $retries;

        return $this;
    }

    /**
     * This job waits until `$job` is Finished, and is canceled if it is not (`spec.dependsOn`). `$job` must exist
     * already: a Job created with the client, a CommerceJob, or a name.
     *
     * Needs an operator whose CRD has `spec.dependsOn`; with an older one the apiserver refuses the job with an
     * UnknownFieldException. A job that is started *after* this one and is created with it is a depending job:
     * use addDependingJob().
     */
    public function addDependency(Job|CommerceJob|string $job): self
    {
        $this->dependencies[] = $job;

        return $this;
    }

    /**
     * A job created after this one succeeded, and canceled if it did not (`spec.dependingJobs`; JMS: a job created
     * with this one that `addDependency()`s it). Its CommerceJob is named `<this job's name>-<$job's name>`.
     */
    public function addDependingJob(DependingJob $job): self
    {
        $this->dependingJobs[] = $job;

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

    /**
     * Makes creating this job idempotent: the CommerceJob gets a name derived from `$key` (instead of a generated
     * one), so a second create() with the same key (a retried PHP request) returns the job that exists, when it is
     * the same job, instead of starting it twice. Keys are per namespace; use one that names the work, e.g.
     * "order-4711-export".
     */
    public function setIdempotencyKey(string $key): self
    {
        if ($key === '') {
            throw new \InvalidArgumentException('the idempotency key must not be empty');
        }
        $this->idempotencyKey = $key;

        return $this;
    }

    /**
     * Any other field of the CommerceJob's spec, as in its CRD (`image`, `env`, `resources`, `podAnnotations`,
     * `retryBackoffSeconds` ...). The fields that this class sets by its own methods cannot be set this way.
     */
    public function setSpecField(string $field, mixed $value): self
    {
        if (in_array($field, Manifest::MAPPED_FIELDS, true)) {
            throw new \InvalidArgumentException(sprintf('spec.%s is set by the Job\'s own arguments and methods, not by setSpecField()', $field));
        }
        $this->specFields[$field] = $value;

        return $this;
    }

    public function getCommand(): ?string
    {
        return $this->command;
    }

    /** @return list<string> */
    public function getArgs(): array
    {
        return $this->args;
    }

    public function getQueue(): ?string
    {
        return $this->queue;
    }

    public function getPriority(): ?int
    {
        return $this->priority;
    }

    public function getTemplate(): ?string
    {
        return $this->template;
    }

    public function getExecuteAfter(): ?\DateTimeImmutable
    {
        return $this->executeAfter;
    }

    /** null: no limit */
    public function getMaxRuntime(): ?int
    {
        return $this->maxRuntimeSeconds;
    }

    public function getMaxRetries(): ?int
    {
        return $this->maxRetries;
    }

    public function getLabel(): ?string
    {
        return $this->label;
    }

    public function getDescription(): ?string
    {
        return $this->description;
    }

    public function getIdempotencyKey(): ?string
    {
        return $this->idempotencyKey;
    }

    /** @return list<Job|CommerceJob|string> */
    public function getDependencies(): array
    {
        return $this->dependencies;
    }

    /** @return list<DependingJob> */
    public function getDependingJobs(): array
    {
        return $this->dependingJobs;
    }

    /** @return array<string, mixed> */
    public function getSpecFields(): array
    {
        return $this->specFields;
    }

    /** The CommerceJob's name, once `Client::create()` created it (null before). */
    public function getName(): ?string
    {
        return $this->name;
    }

    /** @internal called by Client::create() */
    public function markCreated(string $name): void
    {
        $this->name = $name;
    }
}
