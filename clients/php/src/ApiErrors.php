<?php

declare(strict_types=1);

namespace CommerceJobs\Client;

use CommerceJobs\Client\Exception\ApiException;
use CommerceJobs\Client\Exception\FieldError;
use CommerceJobs\Client\Exception\ForbiddenException;
use CommerceJobs\Client\Exception\InvalidFieldException;
use CommerceJobs\Client\Exception\NotFoundException;
use CommerceJobs\Client\Exception\UnauthorizedException;
use CommerceJobs\Client\Exception\UnknownFieldException;

/**
 * Turns the apiserver's refusal of a request (an HTTP status and a `Status` body) into the exception that says what
 * it means (pure: no I/O).
 */
final class ApiErrors
{
    // The cause that the apiserver adds after a schema error, for the CEL rules that it then skipped: not a field.
    private const SKIPPED_RULES = 'some validation rules were not checked';

    /**
     * @param string $verb     the RBAC verb of the request (create, get, watch, patch ...)
     * @param string $resource e.g. commercejobs.commercejobs.dev
     */
    public static function fromResponse(int $httpStatus, string $body, string $verb, string $resource): ApiException
    {
        $status = json_decode($body, true);
        if (!is_array($status) || ($status['kind'] ?? null) !== 'Status') {
            $text = trim($body) === '' ? 'no body' : self::shorten(trim($body));

            return new ApiException(sprintf('%s %s: HTTP %d: %s', $verb, $resource, $httpStatus, $text), $httpStatus, '');
        }
        $reason = is_string($status['reason'] ?? null) ? $status['reason'] : '';
        $message = is_string($status['message'] ?? null) ? $status['message'] : '';

        return match (true) {
            $httpStatus === 403 => self::forbidden($message, $verb, $resource, $status),
            $httpStatus === 401 => new UnauthorizedException(
                sprintf('the apiserver did not accept the token (%s): it is expired, revoked or of another cluster', $message),
                401,
                $reason,
                $status,
            ),
            $httpStatus === 404 => new NotFoundException($message, 404, $reason, $status),
            $httpStatus === 400 && ($unknown = self::unknownFields($message)) !== [] => new UnknownFieldException(
                self::unknownFieldsMessage($unknown),
                $unknown,
                $httpStatus,
                $reason,
                $status,
            ),
            $reason === 'Invalid' && ($errors = self::fieldErrors($status)) !== [] => new InvalidFieldException(
                sprintf('the CommerceJob was refused: %s', implode('; ', array_map('strval', $errors))),
                $errors,
                $httpStatus,
                $reason,
                $status,
            ),
            default => new ApiException(
                sprintf('%s %s: %s', $verb, $resource, $message !== '' ? $message : "HTTP $httpStatus"),
                $httpStatus,
                $reason,
                $status,
            ),
        };
    }

    /**
     * The refused fields of an Invalid Status, from its causes. A CEL rule of the spec object itself comes with the
     * field `spec`; its message names the field it is about (`spec.command is required ...`), which is then the field.
     *
     * @param array<string, mixed> $status
     *
     * @return list<FieldError>
     */
    public static function fieldErrors(array $status): array
    {
        $causes = $status['details']['causes'] ?? [];
        $errors = [];
        foreach (is_array($causes) ? $causes : [] as $cause) {
            if (!is_array($cause)) {
                continue;
            }
            $field = is_string($cause['field'] ?? null) ? $cause['field'] : '';
            $message = is_string($cause['message'] ?? null) ? $cause['message'] : '';
            if (str_contains($message, self::SKIPPED_RULES)) {
                continue;
            }
            // "Invalid value: spec.queue is immutable ..." of a CEL rule: the value part is the rule's message.
            $message = (string) preg_replace('/^Invalid value: /', '', $message);
            if (($field === 'spec' || $field === '') && preg_match('/^(spec(?:\.[A-Za-z]+|\[\d+\])+)\b/', $message, $m)) {
                $field = $m[1];
            }
            $errors[] = new FieldError($field !== '' ? $field : 'spec', $message, is_string($cause['reason'] ?? null) ? $cause['reason'] : '');
        }

        return $errors;
    }

    /** @return list<FieldError> the fields of a strict decoding error (`unknown field "spec.dependsOn"`) */
    private static function unknownFields(string $message): array
    {
        if (!preg_match_all('/unknown field "([^"]+)"/', $message, $matches)) {
            return [];
        }

        return array_map(
            static fn (string $field): FieldError => new FieldError(
                $field,
                'is not a field of the CommerceJob CRD installed in this cluster',
                'FieldValueNotSupported',
            ),
            array_values(array_unique($matches[1])),
        );
    }

    /** @param non-empty-list<FieldError> $unknown */
    private static function unknownFieldsMessage(array $unknown): string
    {
        $fields = implode(', ', array_map(static fn (FieldError $e): string => $e->field, $unknown));
        $hint = in_array('spec.dependsOn', array_map(static fn (FieldError $e): string => $e->field, $unknown), true)
            ? ': Job::addDependency() needs an operator whose CommerceJob CRD has spec.dependsOn; with this one, '
                . 'use Job::addDependingJob() (spec.dependingJobs) instead'
            : ': the operator installed in this cluster is older than this client; upgrade it, or leave the field out';

        return sprintf('the CommerceJob was refused: unknown field %s%s', $fields, $hint);
    }

    /** @param array<string, mixed> $status */
    private static function forbidden(string $message, string $verb, string $resource, array $status): ForbiddenException
    {
        // RBAC: `... is forbidden: User "system:serviceaccount:shop:shop" cannot patch resource "commercejobs" in API
        // group "commercejobs.dev" in the namespace "shop"`.
        $rbac = '/User "([^"]+)" cannot (\S+) resource "([^"]+)"(?: in API group "([^"]*)")?(?: in the namespace "([^"]+)")?/';
        if (preg_match($rbac, $message, $m)) {
            [$user, $verb] = [$m[1], $m[2]];
            $group = $m[4] ?? '';
            $resource = $group !== '' ? "{$m[3]}.{$group}" : $m[3];
            $namespace = ($m[5] ?? '') !== '' ? $m[5] : null;
            $who = str_starts_with($user, 'system:serviceaccount:') ? "the ServiceAccount $user" : "the user $user";
            $where = $namespace !== null ? " in the namespace $namespace" : '';

            return new ForbiddenException(
                sprintf(
                    '%s may not %s %s%s: its Role lacks the verb "%s" on "%s" (API group "%s")',
                    $who,
                    $verb,
                    $resource,
                    $where,
                    $verb,
                    $m[3],
                    $group,
                ),
                $verb,
                $resource,
                $user,
                $namespace,
                true,
                $status,
            );
        }

        // Not RBAC: an admission policy or webhook refused, and its message says why.
        return new ForbiddenException(
            sprintf('%s %s was refused by admission: %s', $verb, $resource, $message),
            $verb,
            $resource,
            null,
            null,
            false,
            $status,
        );
    }

    private static function shorten(string $text): string
    {
        return strlen($text) > 500 ? substr($text, 0, 500) . '...' : $text;
    }
}
