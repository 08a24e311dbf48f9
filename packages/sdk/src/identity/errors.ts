import { GrpcStatus, HexrError, type ErrorKind } from "@hexr/core";

/** gRPC status codes the Workload API uses (shared with the server through @hexr/core). */
export const GrpcCode = GrpcStatus;

const KIND_BY_CODE: Record<number, ErrorKind> = {
  [GrpcCode.INVALID_ARGUMENT]: "invalid_argument",
  [GrpcCode.DEADLINE_EXCEEDED]: "timeout",
  [GrpcCode.NOT_FOUND]: "not_found",
  [GrpcCode.PERMISSION_DENIED]: "permission_denied",
  [GrpcCode.UNAUTHENTICATED]: "unauthenticated",
  [GrpcCode.UNAVAILABLE]: "unavailable",
  [GrpcCode.FAILED_PRECONDITION]: "failed_precondition",
};

/** A gRPC status from the Workload API, as a HexrError whose `grpcCode` tells retryable from fatal. */
export class WorkloadApiError extends HexrError {
  constructor(
    readonly grpcCode: number,
    message: string,
  ) {
    super(WorkloadApiError.codeFor(grpcCode), message, { kind: KIND_BY_CODE[grpcCode] ?? "upstream", details: { grpcCode } });
    this.name = "WorkloadApiError";
  }

  private static codeFor(grpcCode: number): string {
    switch (grpcCode) {
      case GrpcCode.PERMISSION_DENIED:
        return "identity.no_identity";
      case GrpcCode.INVALID_ARGUMENT:
        return "identity.invalid_request";
      case GrpcCode.UNAVAILABLE:
        return "identity.workload_api_unavailable";
      case GrpcCode.UNIMPLEMENTED:
        return "identity.unimplemented";
      case GrpcCode.CANCELLED:
        return "identity.cancelled";
      case GrpcCode.DEADLINE_EXCEEDED:
        return "identity.timeout";
      default:
        return "identity.workload_api_error";
    }
  }

  /** The spec: clients retry UNAVAILABLE and PERMISSION_DENIED with a backoff, never INVALID_ARGUMENT or UNIMPLEMENTED. */
  get retryable(): boolean {
    return this.grpcCode !== GrpcCode.INVALID_ARGUMENT && this.grpcCode !== GrpcCode.UNIMPLEMENTED;
  }
}
