export { ENDPOINT_ENV, parseEndpoint, resolveEndpoint, type WorkloadEndpoint } from "./endpoint.js";
export { GrpcCode, WorkloadApiError } from "./errors.js";
export { WorkloadApiClient, type Watch, type WorkloadApiClientOptions } from "./workload-client.js";
export { Identity, createIdentity, type IdentityOptions } from "./identity.js";
export {
  parseJwtBundle,
  validateJwtSvid,
  decodeJwtUnverified,
  type JwtBundle,
  type JwtSvid,
  type ValidatedJwtSvid,
} from "./jwt.js";
export { splitDerCertificates, spiffeIdOfCertificate, type X509Bundle, type X509Context, type X509Svid } from "./svid.js";
export {
  authorizeAny,
  authorizeId,
  authorizeMemberOf,
  authorizePeer,
  authorizeTenant,
  keepServerContextFresh,
  mtlsClientOptions,
  mtlsServerOptions,
  peerSpiffeId,
  svidSecureContext,
  svidTlsOptions,
  type Authorizer,
} from "./tls.js";
export {
  writeContextMarker,
  removeContextMarker,
  processStartTime,
  bootId,
  type ContextMarker,
  type WriteMarkerOptions,
} from "./context-marker.js";
export { defaultIdentity } from "./default.js";
