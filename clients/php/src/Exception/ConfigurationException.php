<?php

declare(strict_types=1);

namespace CommerceJobs\Client\Exception;

/** No usable credentials: no ServiceAccount in the pod, a missing or unsupported kubeconfig, an unreadable file. */
final class ConfigurationException extends \RuntimeException implements CommerceJobsException
{
}
