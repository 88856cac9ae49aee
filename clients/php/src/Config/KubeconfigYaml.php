<?php

declare(strict_types=1);

namespace CommerceJobs\Client\Config;

/**
 * Reads kubeconfig files without a YAML extension: the block YAML that kubectl, client-go and PyYAML write (nested
 * mappings, lists of mappings, plain and quoted scalars, flat flow collections, comments), or JSON. Anything else
 * (anchors, tags, block scalars, nested flow collections) is refused with its line number rather than misread.
 */
final class KubeconfigYaml
{
    // What begins anchors, aliases, tags, block scalars and reserved indicators.
    private const UNSUPPORTED = ['&', '*', '!', '|', '>', '@', '`'];

    /** @var list<array{indent: int, text: string, line: int}> */
    private array $lines = [];
    private int $pos = 0;

    /** @return array<mixed> */
    public static function parse(string $text): array
    {
        $trimmed = ltrim($text);
        if (str_starts_with($trimmed, '{')) {
            $json = json_decode($trimmed, true);
            if (!is_array($json)) {
                throw new \InvalidArgumentException('not valid JSON: ' . json_last_error_msg());
            }

            return $json;
        }
        $parser = new self();
        $parser->lines = self::lines($text);
        if ($parser->lines === []) {
            return [];
        }
        $value = $parser->block($parser->lines[0]['indent']);
        if ($parser->pos < count($parser->lines)) {
            $parser->fail('unexpected indentation');
        }
        if (!is_array($value)) {
            throw new \InvalidArgumentException('not a kubeconfig: the document is not a mapping');
        }

        return $value;
    }

    /** @return list<array{indent: int, text: string, line: int}> the lines that hold content, comments removed */
    private static function lines(string $text): array
    {
        $lines = [];
        foreach (preg_split('/\r\n|\n|\r/', $text) ?: [] as $number => $raw) {
            if (preg_match('/^\s*(#.*)?$/', $raw) || preg_match('/^(---|\.\.\.)(\s.*)?$/', $raw) || str_starts_with($raw, '%')) {
                continue;
            }
            if (!preg_match('/^( *)(\S.*)$/', $raw, $m)) {
                throw new \InvalidArgumentException(sprintf('line %d: tabs are not allowed in YAML indentation', $number + 1));
            }
            $lines[] = ['indent' => strlen($m[1]), 'text' => rtrim($m[2]), 'line' => $number + 1];
        }

        return $lines;
    }

    private function block(int $indent): mixed
    {
        $line = $this->lines[$this->pos];

        return self::isItem($line['text']) ? $this->sequence($indent) : $this->mapping($indent);
    }

    /** @return list<mixed> */
    private function sequence(int $indent): array
    {
        $items = [];
        while ($this->pos < count($this->lines)) {
            $line = $this->lines[$this->pos];
            if ($line['indent'] < $indent) {
                break;
            }
            if ($line['indent'] > $indent || !self::isItem($line['text'])) {
                if ($line['indent'] === $indent) {
                    break;  // a key of the mapping that holds this sequence at the same indentation
                }
                $this->fail('unexpected indentation');
            }
            $rest = substr($line['text'], 1);
            $content = ltrim($rest);
            if ($content === '') {
                ++$this->pos;
                $items[] = $this->nestedOrNull($indent);
                continue;
            }
            // "- name: x": a mapping whose keys are aligned with "name".
            $column = $indent + 1 + (strlen($rest) - strlen($content));
            if (self::splitKey($content) !== null || self::isItem($content)) {
                $this->lines[$this->pos] = ['indent' => $column, 'text' => $content, 'line' => $line['line']];
                $items[] = $this->block($column);
                continue;
            }
            ++$this->pos;
            $items[] = $this->scalarWithContinuation($content, $indent, $line['line']);
        }

        return $items;
    }

    /** @return array<string, mixed> */
    private function mapping(int $indent): array
    {
        $map = [];
        while ($this->pos < count($this->lines)) {
            $line = $this->lines[$this->pos];
            if ($line['indent'] < $indent || ($line['indent'] === $indent && self::isItem($line['text']))) {
                break;
            }
            if ($line['indent'] > $indent) {
                $this->fail('unexpected indentation');
            }
            $pair = self::splitKey($line['text']);
            if ($pair === null) {
                $this->fail('expected "key: value"');
            }
            [$key, $value] = $pair;
            ++$this->pos;
            if ($value === '') {
                $next = $this->lines[$this->pos] ?? null;
                // "key:" then "- item" at the same indentation: the sequence is the key's value.
                $map[$key] = $next !== null && $next['indent'] === $indent && self::isItem($next['text'])
                    ? $this->sequence($indent)
                    : $this->nestedOrNull($indent);
            } else {
                $map[$key] = $this->scalarWithContinuation($value, $indent, $line['line']);
            }
        }

        return $map;
    }

    private function nestedOrNull(int $indent): mixed
    {
        $next = $this->lines[$this->pos] ?? null;

        return $next !== null && $next['indent'] > $indent ? $this->block($next['indent']) : null;
    }

    /** A plain scalar may go on over more-indented lines (folded with a space, as PyYAML wraps long values). */
    private function scalarWithContinuation(string $text, int $indent, int $line): mixed
    {
        $first = $text[0];
        if (!in_array($first, ['"', "'", '[', '{', ...self::UNSUPPORTED], true)) {
            while (($next = $this->lines[$this->pos] ?? null) !== null && $next['indent'] > $indent) {
                if (self::splitKey($next['text']) !== null || self::isItem($next['text'])) {
                    $this->fail('unexpected indentation');  // a key or an item cannot go on a plain value
                }
                $text .= ' ' . $next['text'];
                ++$this->pos;
            }
        }

        return self::scalar($text, $line);
    }

    private static function scalar(string $text, int $line): mixed
    {
        $fail = static fn (string $why): \InvalidArgumentException => new \InvalidArgumentException("line $line: $why");
        $first = $text[0];
        if ($first === '"') {
            if (!preg_match('/^"((?:[^"\\\\]|\\\\.)*)"\s*(#.*)?$/', $text, $m)) {
                throw $fail('a double-quoted value must end on its line');
            }

            return self::unescape($m[1], $fail);
        }
        if ($first === "'") {
            if (!preg_match("/^'((?:[^']|'')*)'\\s*(#.*)?$/", $text, $m)) {
                throw $fail('a single-quoted value must end on its line');
            }

            return str_replace("''", "'", $m[1]);
        }
        if (in_array($first, self::UNSUPPORTED, true)) {
            throw $fail(sprintf('"%s" (anchors, aliases, tags, block scalars) is not supported in a kubeconfig here', $first));
        }
        if ($first === '[' || $first === '{') {
            return self::flow(rtrim((string) preg_replace('/[\]}]\s+#.*$/', $first === '[' ? ']' : '}', $text)), $fail);
        }
        $text = rtrim((string) preg_replace('/\s+#.*$/', '', $text));

        return match (true) {
            in_array($text, ['null', 'Null', 'NULL', '~'], true) => null,
            in_array($text, ['true', 'True', 'TRUE'], true) => true,
            in_array($text, ['false', 'False', 'FALSE'], true) => false,
            (bool) preg_match('/^-?(0|[1-9][0-9]{0,17})$/', $text) => (int) $text,
            default => $text,
        };
    }

    /** @return array<mixed> `{}`, `[]`, and flat flow collections of scalars: `[a, "b"]`, `{cluster: dev, user: 'x'}` */
    private static function flow(string $text, \Closure $fail): array
    {
        $open = $text[0];
        $close = $open === '[' ? ']' : '}';
        if (!str_ends_with($text, $close)) {
            throw $fail("a flow collection must end on its line with $close");
        }
        $items = self::flowItems(substr($text, 1, -1), $fail);
        if ($open === '[') {
            return array_map(static fn (string $item): mixed => self::scalar($item, 0), $items);
        }
        $map = [];
        foreach ($items as $item) {
            $pair = self::splitKey($item);
            if ($pair === null) {
                throw $fail("expected \"key: value\" in $text");
            }
            $map[$pair[0]] = $pair[1] === '' ? null : self::scalar($pair[1], 0);
        }

        return $map;
    }

    /** @return list<string> the items of a flat flow collection, split at the commas outside quotes */
    private static function flowItems(string $body, \Closure $fail): array
    {
        $items = [];
        $current = '';
        $quote = null;
        for ($i = 0, $n = strlen($body); $i < $n; ++$i) {
            $c = $body[$i];
            if ($quote !== null) {
                $current .= $c;
                if ($c === '\\' && $quote === '"' && $i + 1 < $n) {
                    $current .= $body[++$i];
                } elseif ($c === $quote) {
                    $quote = null;
                }
            } elseif ($c === '"' || $c === "'") {
                $quote = $c;
                $current .= $c;
            } elseif ($c === '[' || $c === '{' || $c === ']' || $c === '}') {
                throw $fail('nested flow collections are not supported in a kubeconfig here');
            } elseif ($c === ',') {
                $items[] = trim($current);
                $current = '';
            } else {
                $current .= $c;
            }
        }
        if ($quote !== null) {
            throw $fail('a quoted value in a flow collection is not closed');
        }
        $items[] = trim($current);

        return array_values(array_filter($items, static fn (string $item): bool => $item !== ''));
    }

    private static function unescape(string $body, \Closure $fail): string
    {
        $map = ['"' => '"', '\\' => '\\', '/' => '/', 'n' => "\n", 't' => "\t", 'r' => "\r", '0' => "\0", ' ' => ' '];

        return (string) preg_replace_callback('/\\\\(u[0-9a-fA-F]{4}|x[0-9a-fA-F]{2}|.)/', static function (array $m) use ($map, $fail): string {
            $escape = $m[1];
            if ($escape[0] === 'u' && strlen($escape) === 5) {
                return self::utf8((int) hexdec(substr($escape, 1)));
            }
            if ($escape[0] === 'x' && strlen($escape) === 3) {
                return chr((int) hexdec(substr($escape, 1)));
            }
            if (!isset($map[$escape])) {
                throw $fail("unknown escape \\$escape");
            }

            return $map[$escape];
        }, $body);
    }

    /** A code point of the Basic Multilingual Plane as UTF-8 (without ext-mbstring). */
    private static function utf8(int $cp): string
    {
        return match (true) {
            $cp < 0x80 => chr($cp),
            $cp < 0x800 => chr(0xC0 | ($cp >> 6)) . chr(0x80 | ($cp & 0x3F)),
            default => chr(0xE0 | ($cp >> 12)) . chr(0x80 | (($cp >> 6) & 0x3F)) . chr(0x80 | ($cp & 0x3F)),
        };
    }

    /** @return array{0: string, 1: string}|null the key and the rest of "key: rest" (rest may be empty) */
    private static function splitKey(string $text): ?array
    {
        if (preg_match('/^"((?:[^"\\\\]|\\\\.)*)"\s*:(?:\s+(.*))?$/', $text, $m)
            || preg_match("/^'((?:[^']|'')*)'\\s*:(?:\\s+(.*))?$/", $text, $m)
            || preg_match('/^([^\s\'"#\[\]{},&*!|>%@`-][^:#]*?|-[^\s:#][^:#]*?)\s*:(?:\s+(.*))?$/', $text, $m)) {
            $key = $text[0] === "'" ? str_replace("''", "'", $m[1]) : ($text[0] === '"' ? stripcslashes($m[1]) : $m[1]);

            $rest = trim($m[2] ?? '');

            return [$key, str_starts_with($rest, '#') ? '' : $rest];  // "key: # comment" has no value
        }

        return null;
    }

    private static function isItem(string $text): bool
    {
        return $text === '-' || str_starts_with($text, '- ');
    }

    private function fail(string $why): never
    {
        $line = $this->lines[$this->pos] ?? end($this->lines);
        throw new \InvalidArgumentException(sprintf('line %d: %s', $line['line'] ?? 0, $why));
    }
}
