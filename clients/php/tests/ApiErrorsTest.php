<?php

declare(strict_types=1);

namespace CommerceJobs\Client\Tests;

use CommerceJobs\Client\ApiErrors;
use CommerceJobs\Client\Client;
use CommerceJobs\Client\Exception\ApiException;
use CommerceJobs\Client\Exception\ForbiddenException;
use CommerceJobs\Client\Exception\InvalidFieldException;
use CommerceJobs\Client\Exception\NotFoundException;
use CommerceJobs\Client\Exception\UnauthorizedException;
use CommerceJobs\Client\Exception\UnknownFieldException;
use PHPUnit\Framework\TestCase;

/** The apiserver's refusals, as recorded from kube-apiserver v1.36 with this project's CRD (tests/fixtures). */
final class ApiErrorsTest extends TestCase
{
    private static function refusal(string $fixture, string $verb = 'create'): ApiException
    {
        $body = (string) file_get_contents(__DIR__ . "/fixtures/$fixture.json");
        $code = (int) json_decode($body, true)['code'];

        return ApiErrors::fromResponse($code, $body, $verb, Client::RESOURCE);
    }

    public function testACelRuleOfTheSpecNamesTheFieldItIsAbout(): void
    {
        $e = self::refusal('422-cel-command-required');
        self::assertInstanceOf(InvalidFieldException::class, $e);
        self::assertSame('spec.command', $e->getField());
        self::assertSame(
            'the CommerceJob was refused: spec.command: spec.command is required (or spec.templateRef, to take it from a template)',
            $e->getMessage(),
        );
        self::assertSame(422, $e->getHttpStatus());
    }

    public function testAnImmutableFieldIsNamed(): void
    {
        $e = self::refusal('422-cel-queue-immutable', 'patch');
        self::assertInstanceOf(InvalidFieldException::class, $e);
        self::assertSame(['spec.queue'], $e->getFields());
        self::assertStringContainsString('spec.queue is immutable', $e->getMessage());
    }

    public function testEverySchemaRefusalIsNamed(): void
    {
        $e = self::refusal('422-schema-queue-priority');
        self::assertInstanceOf(InvalidFieldException::class, $e);
        self::assertSame(['spec.queue', 'spec.priority'], $e->getFields());
        self::assertStringContainsString('spec.queue: "My Queue": spec.queue in body should match', $e->getMessage());
        self::assertStringContainsString('spec.priority: 5000: spec.priority in body should be less than or equal to 1000', $e->getMessage());
    }

    public function testTheNoteAboutSkippedCelRulesIsNotAField(): void
    {
        $e = self::refusal('422-executeafter-type');
        self::assertInstanceOf(InvalidFieldException::class, $e);
        self::assertSame(['spec.executeAfter'], $e->getFields());
        self::assertStringNotContainsString('<nil>', $e->getMessage());
    }

    public function testAFieldThatTheInstalledCrdLacksSaysWhatToUseInstead(): void
    {
        $e = self::refusal('400-unknown-field-dependson');
        self::assertInstanceOf(UnknownFieldException::class, $e);
        self::assertSame('spec.dependsOn', $e->getField());
        self::assertStringContainsString('unknown field spec.dependsOn', $e->getMessage());
        self::assertStringContainsString('addDependingJob()', $e->getMessage());
    }

    public function testRbacNamesTheServiceAccountTheVerbAndTheResource(): void
    {
        $e = self::refusal('403-rbac-patch', 'patch');
        self::assertInstanceOf(ForbiddenException::class, $e);
        self::assertTrue($e->isRbac());
        self::assertSame('patch', $e->getVerb());
        self::assertSame('commercejobs.commercejobs.dev', $e->getResource());
        self::assertSame('system:serviceaccount:default:shop', $e->getUser());
        self::assertSame('default', $e->getNamespace());
        self::assertSame(
            'the ServiceAccount system:serviceaccount:default:shop may not patch commercejobs.commercejobs.dev in the '
            . 'namespace default: its Role lacks the verb "patch" on "commercejobs" (API group "commercejobs.dev")',
            $e->getMessage(),
        );
    }

    public function testTheVerbIsTheApiserversNotTheCallers(): void
    {
        // A wait() lacks `watch`: the apiserver's verb is what the Role must grant.
        $e = self::refusal('403-rbac-watch', 'get');
        self::assertInstanceOf(ForbiddenException::class, $e);
        self::assertSame('watch', $e->getVerb());
    }

    public function testAnAdmissionPolicyRefusalIsNotTakenForRbac(): void
    {
        $e = self::refusal('403-admission-policy');
        self::assertInstanceOf(ForbiddenException::class, $e);
        self::assertFalse($e->isRbac());
        self::assertNull($e->getUser());
        self::assertSame('create', $e->getVerb());
        self::assertStringContainsString('refused by admission', $e->getMessage());
        self::assertStringContainsString('shop operators may only start a CommerceJobTemplate', $e->getMessage());
    }

    public function testARefusedTokenAndAMissingJob(): void
    {
        $e = self::refusal('401-unauthorized', 'get');
        self::assertInstanceOf(UnauthorizedException::class, $e);
        self::assertStringContainsString('did not accept the token', $e->getMessage());

        $e = self::refusal('404-not-found', 'get');
        self::assertInstanceOf(NotFoundException::class, $e);
        self::assertSame('commercejobs.commercejobs.dev "nope" not found', $e->getMessage());
    }

    public function testABodyThatIsNotAStatusKeepsTheHttpCode(): void
    {
        $e = ApiErrors::fromResponse(502, '<html>Bad Gateway</html>', 'get', Client::RESOURCE);
        self::assertSame(ApiException::class, $e::class);
        self::assertSame(502, $e->getHttpStatus());
        self::assertSame('get commercejobs.commercejobs.dev: HTTP 502: <html>Bad Gateway</html>', $e->getMessage());
    }
}
