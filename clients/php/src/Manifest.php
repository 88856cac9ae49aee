<?php

declare(strict_types=1);

namespace CommerceJobs\Client;

/**
 * The pure mapping of a Job onto a CommerceJob object, and of an idempotency key onto its name (no I/O).
 */
final class Manifest
{
    public const API_VERSION = 'commercejobs.dev/v1alpha1';
    public const KIND = 'CommerceJob';
    /** The idempotency key of a job created with one, to tell it from a job that merely has the same name. */
    public const KEY_ANNOTATION = 'commercejobs.dev/idempotency-key';
    /** The spec fields that Job sets by its own arguments and methods. */
    public const MAPPED_FIELDS = [
        'command', 'params', 'queue', 'priority', 'executeAfter', 'maxRuntimeSeconds', 'maxRetries', 'dependsOn',
        'dependingJobs', 'templateRef', 'label', 'description',
    ];
    /**
     * Spec fields that do not decide whether an existing job is the one asked for: `cancel` (someone canceled it:
     * it is still that job) and `executeAfter` (a retried request computes "in ten minutes" anew; the job that
     * exists keeps its own time).
     */
    private const NOT_COMPARED = ['cancel', 'executeAfter'];
    private const PREFIX_LENGTH = 40;
    private const HASH_LENGTH = 16;

    /** @return array<string, mixed> the CommerceJob to POST */
    public static function build(Job $job): array
    {
        $metadata = [];
        $key = $job->getIdempotencyKey();
        if ($key !== null) {
            $metadata['name'] = self::nameForKey(self::namePrefix($job), $key);
            $metadata['annotations'] = [self::KEY_ANNOTATION => $key];
        } else {
            $metadata['generateName'] = self::namePrefix($job) . '-';
        }

        return ['apiVersion' => self::API_VERSION, 'kind' => self::KIND, 'metadata' => $metadata, 'spec' => self::spec($job)];
    }

    /** @return array<string, mixed> */
    public static function spec(Job $job): array
    {
        $spec = [];
        if ($job->getTemplate() !== null) {
            $spec['templateRef'] = ['name' => $job->getTemplate()];
        }
        if ($job->getCommand() !== null) {
            $spec['command'] = $job->getCommand();
        }
        if ($job->getArgs() !== []) {
            $spec['params'] = $job->getArgs();
        }
        $executeAfter = $job->getExecuteAfter();
        $optional = [
            'label' => $job->getLabel(),
            'description' => $job->getDescription(),
            'queue' => $job->getQueue(),
            'priority' => $job->getPriority(),
            // RFC 3339 in UTC, to the second: what the CRD's date-time format takes, whatever the PHP timezone.
            'executeAfter' => $executeAfter?->setTimezone(new \DateTimeZone('UTC'))->format('Y-m-d\TH:i:s\Z'),
            'maxRuntimeSeconds' => $job->getMaxRuntime(),
            'maxRetries' => $job->getMaxRetries(),
        ];
        $spec += array_filter($optional, static fn (mixed $v): bool => $v !== null);
        if ($job->getDependencies() !== []) {
            $spec['dependsOn'] = array_values(array_unique(array_map(self::dependencyName(...), $job->getDependencies())));
        }
        if ($job->getDependingJobs() !== []) {
            $spec['dependingJobs'] = array_map(static fn (DependingJob $d): array => $d->toSpec(), $job->getDependingJobs());
        }

        return $spec + $job->getSpecFields();
    }

    /**
     * The name a job gets from its idempotency key: readable prefix, then a hash of the key, so the same key always
     * gives the same name and any key gives a valid one (at most 57 characters, lowercase RFC 1123).
     */
    public static function nameForKey(string $prefix, string $key): string
    {
        return $prefix . '-' . substr(hash('sha256', $key), 0, self::HASH_LENGTH);
    }

    /** `silver:import` -> `silver-import`: the command's (or template's) name, as a name may hold it. */
    public static function namePrefix(Job $job): string
    {
        $source = $job->getCommand() ?? $job->getTemplate() ?? 'job';
        $slug = trim((string) preg_replace('/[^a-z0-9]+/', '-', strtolower($source)), '-');
        $slug = rtrim(substr($slug, 0, self::PREFIX_LENGTH), '-');

        return $slug !== '' ? $slug : 'job';
    }

    /**
     * The spec fields in which an existing job differs from the one asked for (empty: it is that job). A field that
     * was not asked for may be set on a job from a template: the operator copies the template's fields into it.
     *
     * @param array<string, mixed> $wanted   the spec that create() sent
     * @param array<string, mixed> $existing the spec of the job that exists
     *
     * @return list<string> e.g. ['spec.params']
     */
    public static function differences(array $wanted, array $existing): array
    {
        $fromTemplate = isset($wanted['templateRef']);
        $fields = [];
        foreach (array_unique([...array_keys($wanted), ...array_keys($existing)]) as $field) {
            if (in_array($field, self::NOT_COMPARED, true)) {
                continue;
            }
            if (!array_key_exists($field, $wanted)) {
                if (!$fromTemplate) {
                    $fields[] = "spec.$field";
                }
                continue;
            }
            if (!array_key_exists($field, $existing) || self::canonical($wanted[$field]) !== self::canonical($existing[$field])) {
                $fields[] = "spec.$field";
            }
        }

        return $fields;
    }

    private static function dependencyName(Job|CommerceJob|string $dependency): string
    {
        if (is_string($dependency)) {
            return $dependency;
        }
        if ($dependency instanceof CommerceJob) {
            return $dependency->getName();
        }
        $name = $dependency->getName();
        if ($name === null) {
            throw new \LogicException(sprintf(
                'addDependency(): the job %s has not been created yet; create it first (a job can only depend on a '
                . 'job that exists), or make this job a depending job of it with addDependingJob()',
                $dependency->getCommand() ?? $dependency->getTemplate() ?? '',
            ));
        }

        return $name;
    }

    /** JSON with the keys of every object sorted: the apiserver returns an object's keys in its own order. */
    private static function canonical(mixed $value): string
    {
        $sort = static function (mixed $v) use (&$sort): mixed {
            if (!is_array($v)) {
                return $v;
            }
            if (!array_is_list($v)) {
                ksort($v);
            }

            return array_map($sort, $v);
        };

        return json_encode($sort($value), JSON_THROW_ON_ERROR | JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE);
    }
}
