/**
 * Authentication. With `DM_AUTH=none` every caller is the user `local`
 * (local play; the server refuses non-loopback hosts unless told
 * otherwise). With `DM_AUTH=jwt`, bearer tokens are verified with `jose`:
 * HS256 with `DM_JWT_SECRET`, or RS256/ES256 with keys from
 * `DM_JWT_JWKS_URL`; the user id is the token's `sub`.
 *
 * @module
 */
import { createRemoteJWKSet, jwtVerify, type JWTVerifyGetKey } from "jose";
import type { Config } from "../config.ts";
import { DmError } from "../errors.ts";

/** Verifies a raw token and returns the user id; throws `unauthorized`. */
export type TokenVerifier = (token: string) => Promise<string>;

/** The user id of every caller when auth is off. */
export const LOCAL_USER = "local";

const MAX_TOKEN_LENGTH = 8192;

function unauthorized(message: string, error = "invalid_token"): DmError {
  return new DmError("unauthorized", message, {
    headers: { "WWW-Authenticate": `Bearer realm="dungeon-master", error="${error}"` },
  });
}

/**
 * Build the token verifier for `DM_AUTH=jwt`.
 *
 * @example
 * ```ts
 * const verify = createJwtVerifier(config);
 * const userId = await verify(token); // the token's `sub`
 * ```
 */
export function createJwtVerifier(config: Config, jwks?: JWTVerifyGetKey): TokenVerifier {
  const key: Uint8Array | JWTVerifyGetKey = config.DM_JWT_SECRET
    ? new TextEncoder().encode(config.DM_JWT_SECRET)
    : jwks ?? createRemoteJWKSet(new URL(config.DM_JWT_JWKS_URL!));
  // Pinning algorithms per key type refuses `alg: none` and algorithm
  // confusion (an HS256 token signed with a public key).
  const algorithms = config.DM_JWT_SECRET ? ["HS256"] : ["RS256", "ES256"];
  return async (token) => {
    if (token.length > MAX_TOKEN_LENGTH) throw unauthorized("The token is too long.");
    try {
      const { payload } = await jwtVerify(token, key as Uint8Array, {
        algorithms,
        issuer: config.DM_JWT_ISSUER ?? undefined,
        audience: config.DM_JWT_AUDIENCE ?? undefined,
        requiredClaims: ["sub", "exp"],
      });
      const sub = payload.sub;
      if (typeof sub !== "string" || sub === "" || sub.length > 256) {
        throw unauthorized("The token has no usable subject.");
      }
      return sub;
    } catch (e) {
      if (e instanceof DmError) throw e;
      const code = (e as { code?: string }).code ?? "";
      throw unauthorized(
        code === "ERR_JWT_EXPIRED" ? "The token has expired." : "The token is not valid.",
      );
    }
  };
}

/** The bearer token of a request, or null. */
export function bearerToken(request: Request): string | null {
  const header = request.headers.get("authorization");
  if (header === null) return null;
  const match = /^Bearer\s+([A-Za-z0-9\-._~+/]+=*)\s*$/i.exec(header);
  if (!match) throw unauthorized("Use `Authorization: Bearer <token>`.", "invalid_request");
  return match[1];
}

/**
 * The HTTP authenticator: a bearer header, or `?access_token=` on the SSE
 * replay route only (EventSource cannot set headers). The query value is
 * never logged: access logs carry the route pattern, not the URL.
 */
export function createAuthenticator(verify: TokenVerifier) {
  return async (request: Request, url: URL): Promise<string> => {
    let token = bearerToken(request);
    if (
      token === null && request.method === "GET" && /^\/turns\/[^/]+\/events$/.test(url.pathname)
    ) {
      token = url.searchParams.get("access_token");
    }
    if (token === null) throw unauthorized("Authentication is required.", "invalid_request");
    return await verify(token);
  };
}
