package tollgate

import (
	"errors"
	"fmt"
	"sort"
	"time"
)

// Code is a public error code. Codes are API: never renamed, never reused.
type Code string

// The catalog of codes. See CodeInfo for the status, WebSocket close code and
// retry class of each.
const (
	CodeMissingCredential        Code = "missing_credential"
	CodeInvalidCredential        Code = "invalid_credential"
	CodeInvalidCredentials       Code = "invalid_credentials"
	CodeNoModelAccess            Code = "no_model_access"
	CodeFeatureNotEnabled        Code = "feature_not_enabled"
	CodeBillingRequired          Code = "billing_required"
	CodeQuotaExceeded            Code = "quota_exceeded"
	CodeRateLimitExceeded        Code = "rate_limit_exceeded"
	CodeConcurrencyLimitExceeded Code = "concurrency_limit_exceeded"
	CodeModelNotFound            Code = "model_not_found"
	CodeNotFound                 Code = "not_found"
	CodeConflict                 Code = "conflict"
	CodeValidationError          Code = "validation_error"
	CodeUnsupportedAudioFormat   Code = "unsupported_audio_format"
	CodeAudioTooShort            Code = "audio_too_short"
	CodeAudioFormatMismatch      Code = "audio_format_mismatch"
	CodePayloadTooLarge          Code = "payload_too_large"
	CodeUpstreamTimeout          Code = "upstream_timeout"
	CodeUpstreamUnavailable      Code = "upstream_unavailable"
	CodeUpstreamError            Code = "upstream_error"
	CodeGRPCError                Code = "grpc_error"
	CodeOverloaded               Code = "overloaded"
	CodeInternal                 Code = "internal_error"
	// CodeMethodNotAllowed answers a known route called with the wrong method.
	CodeMethodNotAllowed Code = "method_not_allowed"
	// CodeUnauthorized answers an admin request without the admin token.
	CodeUnauthorized Code = "unauthorized"
)

// CodeInfo is one row of the catalog.
type CodeInfo struct {
	Code Code
	// Status is the HTTP status in the default profile; 0 when the code is
	// never answered over HTTP (stream-only codes).
	Status int
	// CloseCode is the WebSocket close code; 0 when the code never closes a
	// stream.
	CloseCode int
	// Retryable reports whether a client may retry the same request later.
	Retryable bool
	// Message is the default client-safe message.
	Message string
}

var catalog = map[Code]CodeInfo{}

func init() {
	for _, c := range []CodeInfo{
		{CodeMissingCredential, 401, 4001, false, "Missing API key. Send it in the X-API-Key header or as Authorization: Bearer <key>."},
		{CodeInvalidCredential, 401, 4001, false, "Invalid API key: it is unknown, malformed, expired or revoked."},
		{CodeInvalidCredentials, 401, 0, false, "Incorrect email or password."},
		{CodeNoModelAccess, 403, 4003, false, "Model access is not enabled for this key or organization."},
		{CodeFeatureNotEnabled, 403, 4003, false, "Your plan does not include this feature."},
		{CodeBillingRequired, 402, 4029, false, "Free credits are exhausted and billing is not active."},
		{CodeQuotaExceeded, 429, 4029, true, "Monthly limit reached."},
		{CodeRateLimitExceeded, 429, 4029, true, "Rate limit exceeded."},
		{CodeConcurrencyLimitExceeded, 429, 4029, true, "Concurrent request limit reached for this model."},
		{CodeModelNotFound, 404, 4004, false, "The requested model does not exist."},
		{CodeNotFound, 404, 0, false, "Not found."},
		{CodeConflict, 409, 0, false, "Resource already exists."},
		{CodeValidationError, 422, 1003, false, "Request failed validation."},
		{CodeUnsupportedAudioFormat, 400, 4002, false, "The audio format is not supported by this endpoint."},
		{CodeAudioTooShort, 422, 4002, false, "The audio is too short or holds no samples."},
		{CodeAudioFormatMismatch, 0, 4002, false, "The audio data does not match the declared format."},
		{CodePayloadTooLarge, 413, 1009, false, "The request body is too large."},
		{CodeUpstreamTimeout, 504, 1011, true, "The model did not answer in time."},
		{CodeUpstreamUnavailable, 502, 1014, true, "The model server is unreachable."},
		{CodeUpstreamError, 502, 1014, true, "The model server failed."},
		{CodeGRPCError, 502, 1014, true, "The inference gateway encountered an error communicating with the upstream model service."},
		{CodeOverloaded, 503, 1013, true, "The service is temporarily overloaded."},
		{CodeInternal, 500, 1011, true, "Internal error."},
		{CodeMethodNotAllowed, 405, 0, false, "Method not allowed."},
		{CodeUnauthorized, 401, 0, false, "Missing or invalid admin token."},
	} {
		catalog[c.Code] = c
	}
}

// Lookup returns the catalog row for code. Unknown codes get internal_error's row.
func Lookup(code Code) CodeInfo {
	if c, ok := catalog[code]; ok {
		return c
	}
	return catalog[CodeInternal]
}

// Known reports whether code is in the catalog.
func Known(code Code) bool {
	_, ok := catalog[code]
	return ok
}

// Catalog returns every row, sorted by code.
func Catalog() []CodeInfo {
	out := make([]CodeInfo, 0, len(catalog))
	for _, c := range catalog {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Code < out[j].Code })
	return out
}

// Error is a catalog error. Message and Details are safe to show a client;
// Err is the internal cause and is never rendered.
type Error struct {
	Code    Code
	Message string
	Details map[string]any
	// RetryAfter is how long the client should wait; rendered as whole
	// seconds, at least 1, on 429 and 503 answers.
	RetryAfter time.Duration
	// Status overrides the profile's status for this one error (0: none).
	Status int
	// Variant is a finer kind of Code that a profile may answer with a
	// status of its own (VariantMalformed); "" for none.
	Variant string
	Err     error
}

// VariantMalformed marks a validation_error whose request is not well
// formed: an empty body, one that is not JSON (or not multipart when it
// says so), or one without a required field, as opposed to a well-formed
// request with invalid values. Some APIs answer the two differently (seed
// 003: 400 and 422); a profile remaps it under StatusKey.
const VariantMalformed = "malformed"

// StatusKey is the key a profile's Statuses remaps code's variant under:
// "validation_error.malformed".
func StatusKey(code Code, variant string) Code { return code + Code("."+variant) }

// statusVariants are the variant keys a profile may remap, beside the
// codes.
var statusVariants = map[Code]bool{StatusKey(CodeValidationError, VariantMalformed): true}

func (e *Error) Error() string {
	msg := e.Message
	if msg == "" {
		msg = Lookup(e.Code).Message
	}
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, msg, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Code, msg)
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns a catalog error with a formatted client-safe message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// NewError returns a catalog error with the default message.
func NewError(code Code) *Error { return &Error{Code: code} }

// ErrorCode returns the catalog code of err, or internal_error when err is
// not a catalog error. nil has no code.
func ErrorCode(err error) Code {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) && Known(e.Code) {
		return e.Code
	}
	return CodeInternal
}

// AsError returns err as a catalog error; anything else becomes an
// internal_error that keeps err as its cause.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) && Known(e.Code) {
		return e
	}
	return &Error{Code: CodeInternal, Err: err}
}

// ErrorMessage returns the client-safe message of err.
func ErrorMessage(err error) string {
	e := AsError(err)
	if e.Message != "" && e.Code != CodeInternal {
		return e.Message
	}
	return Lookup(e.Code).Message
}

// RetryAfterSeconds rounds d up to whole seconds, at least 1.
func RetryAfterSeconds(d time.Duration) int {
	s := int((d + time.Second - 1) / time.Second)
	if s < 1 {
		return 1
	}
	return s
}
