"""A real local control plane for development and tests.

etcd, kube-apiserver, kube-controller-manager and kube-scheduler built from Go modules, with kwok simulating a
node and the lifecycle of its pods. Nothing here is used by the operator at run time.
"""
