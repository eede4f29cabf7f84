"""Offline stand-in for @rules_java: the rules Bazel 4's own tools load from it, forwarded to the native ones.

Declared in //:WORKSPACE so that Debian's bazel-bootstrap, which cannot download the real rules_java, can
analyse `bazel test //...`. The project builds no Java.
"""

def java_binary(**attrs):
    native.java_binary(**attrs)

def java_import(**attrs):
    native.java_import(**attrs)

def java_library(**attrs):
    native.java_library(**attrs)

def java_proto_library(**attrs):
    native.java_proto_library(**attrs)

def java_runtime(**attrs):
    native.java_runtime(**attrs)

def java_toolchain(**attrs):
    native.java_toolchain(**attrs)
