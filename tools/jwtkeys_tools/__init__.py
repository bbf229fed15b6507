"""jwtkeys tooling: the operator CLI, the local AWS endpoint and ServiceNow emulator, the demo
and the benchmarks. Development and operator machines only: never staged into a Lambda layer."""
