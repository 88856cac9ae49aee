<?php

declare(strict_types=1);

namespace CommerceJobs\Client\Tests;

use CommerceJobs\Client\Config\Connection;
use CommerceJobs\Client\Config\Kubeconfig;
use CommerceJobs\Client\Config\KubeconfigYaml;
use CommerceJobs\Client\Exception\ConfigurationException;
use PHPUnit\Framework\TestCase;

/**
 * Credentials from kubeconfig files as kubectl v1.36 (`kubectl config set-*`), PyYAML (the e2e suite's) and people
 * write them, and from a pod's ServiceAccount directory.
 */
final class KubeconfigTest extends TestCase
{
    private const FIXTURES = __DIR__ . '/fixtures';

    public function testKubectlsFileGivesTheTokenTheEmbeddedCaAndTheContextsNamespace(): void
    {
        $c = Kubeconfig::load(self::FIXTURES . '/kubeconfig-kubectl.yaml');

        self::assertSame('https://10.0.0.1:6443', $c->server);
        self::assertSame('shop', $c->namespace);
        self::assertSame('eyJhbGciOiJSUzI1NiJ9.fixture-token', $c->currentToken());
        self::assertSame(file_get_contents(self::FIXTURES . '/fixture-ca.crt'), $c->caData);
        self::assertNull($c->caFile);
        self::assertFalse($c->insecureSkipTlsVerify);
    }

    public function testJsonIsTheSameConfig(): void
    {
        self::assertEquals(
            Kubeconfig::load(self::FIXTURES . '/kubeconfig-kubectl.yaml'),
            Kubeconfig::load(self::FIXTURES . '/kubeconfig.json'),
        );
        self::assertEquals(
            KubeconfigYaml::parse((string) file_get_contents(self::FIXTURES . '/kubeconfig-kubectl.yaml')),
            json_decode((string) file_get_contents(self::FIXTURES . '/kubeconfig.json'), true),
        );
    }

    public function testPyYamlsFileWithALongTokenAndACaPathRelativeToTheFile(): void
    {
        $c = Kubeconfig::load(self::FIXTURES . '/kubeconfig-pyyaml.yaml');

        self::assertSame('https://127.0.0.1:45678', $c->server);
        self::assertSame('cj-test-1', $c->namespace);
        self::assertSame(1038, strlen((string) $c->currentToken()));
        self::assertStringEndsWith('_-.' . str_repeat('b', 300), (string) $c->currentToken());
        self::assertSame(realpath(self::FIXTURES) . '/fixture-ca.crt', $c->caFile);
    }

    public function testQuotesCommentsAndFlowCollectionsWrittenByHand(): void
    {
        $c = Kubeconfig::load(self::FIXTURES . '/kubeconfig-handwritten.yaml');

        self::assertSame('https://[fd00::1]:6443', $c->server);
        self::assertSame("it's-a-token", $c->currentToken());
        self::assertSame('default', $c->namespace);
        self::assertTrue($c->insecureSkipTlsVerify);
    }

    public function testAnExecPluginIsRefusedWithWhatToDoInstead(): void
    {
        $this->expectException(ConfigurationException::class);
        $this->expectExceptionMessage('the user exec-user authenticates with exec, which this client does not support; use a token');
        Kubeconfig::load(self::FIXTURES . '/kubeconfig-kubectl.yaml', 'other');
    }

    public function testAMissingContextIsNamed(): void
    {
        $this->expectExceptionMessage('has no context named "prod" in contexts');
        Kubeconfig::load(self::FIXTURES . '/kubeconfig-kubectl.yaml', 'prod');
    }

    /** @return iterable<string, array{string, string}> */
    public static function unsupportedYaml(): iterable
    {
        yield 'anchor' => ["users:\n- name: a\n  user: &u\n    token: x\n", 'line 3: "&"'];
        yield 'block scalar' => ["users:\n- name: a\n  user:\n    token: |\n      x\n", 'line 4: "|"'];
        yield 'nested flow' => ["contexts: [{name: a}]\n", 'line 1: nested flow collections'];
        yield 'bad indentation' => ["a:\n  b: 1\n    c: 2\n", 'line 3: unexpected indentation'];
        yield 'tab' => ["a:\n\tb: 1\n", 'line 2: tabs'];
        yield 'open quote' => ["a: \"x\n", 'line 1: a double-quoted value must end on its line'];
    }

    /** @dataProvider unsupportedYaml */
    public function testYamlBeyondKubeconfigsIsRefusedWithItsLine(string $yaml, string $message): void
    {
        $this->expectException(\InvalidArgumentException::class);
        $this->expectExceptionMessage($message);
        KubeconfigYaml::parse($yaml);
    }

    public function testScalars(): void
    {
        self::assertSame(
            ['i' => null, 'a' => null, 'b' => true, 'c' => 6443, 'd' => 'x y', 'e' => "tab\there \u{e9}", 'f' => ['p', 'q r'], 'g' => [], 'h' => '0123'],
            KubeconfigYaml::parse("i: # nothing\na: ~\nb: true\nc: 6443\nd: x\n  y\ne: \"tab\\there \\u00e9\"\nf: [p, 'q r']  # c\ng: {}\nh: '0123'\n"),
        );
    }

    public function testInAPodTheServiceAccountsFilesAndTheServiceHost(): void
    {
        $dir = self::FIXTURES . '/serviceaccount';
        $c = Connection::inCluster(['KUBERNETES_SERVICE_HOST' => '10.96.0.1', 'KUBERNETES_SERVICE_PORT' => '443'], $dir);

        self::assertSame('https://10.96.0.1:443', $c->server);
        self::assertSame('shop', $c->namespace);
        self::assertSame($dir . '/token', $c->tokenFile);
        self::assertSame('fixture-service-account-token', $c->currentToken());
        self::assertSame($dir . '/ca.crt', $c->caFile);

        $v6 = Connection::inCluster(['KUBERNETES_SERVICE_HOST' => 'fd00::1', 'KUBERNETES_SERVICE_PORT' => '443'], $dir);
        self::assertSame('https://[fd00::1]:443', $v6->server);
    }

    public function testOutsideAPodInClusterSaysWhy(): void
    {
        $this->expectExceptionMessage('not in a pod: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set');
        Connection::inCluster([], self::FIXTURES . '/serviceaccount');
    }
}
