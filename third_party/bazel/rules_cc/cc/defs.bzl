"""Offline stand-in for @rules_cc: the rules Bazel 4's own tools load from it, forwarded to the native ones.

Declared in //:WORKSPACE so that Debian's bazel-bootstrap, which cannot download the real rules_cc, can
analyse `bazel test //...`. The project builds no C++.
"""

def cc_binary(**attrs):
    native.cc_binary(**attrs)

def cc_library(**attrs):
    native.cc_library(**attrs)

def cc_proto_library(**attrs):
    native.cc_proto_library(**attrs)

def cc_test(**attrs):
    native.cc_test(**attrs)

def cc_toolchain(**attrs):
    native.cc_toolchain(**attrs)

def cc_toolchain_suite(**attrs):
    native.cc_toolchain_suite(**attrs)

def objc_library(**attrs):
    native.objc_library(**attrs)
