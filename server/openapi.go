package server

import (
	"encoding/json"
	"maps"
	"net/http"
	"reflect"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/s3t-dev/s3t/api"
)

// openAPIPath turns Echo's /v1/models/:name into OpenAPI's /v1/models/{name} and returns the
// parameter names.
func openAPIPath(p string) (string, []string) {
	segs := strings.Split(p, "/")
	var params []string
	for i, s := range segs {
		if name, ok := strings.CutPrefix(s, ":"); ok {
			segs[i] = "{" + name + "}"
			params = append(params, name)
		}
	}
	return strings.Join(segs, "/"), params
}

// OpenAPI returns the OpenAPI 3.1 document of routes: paths, operations, scopes and body
// schemas derived by reflection from the api types.
func OpenAPI(routes []Route) map[string]any {
	schemas := map[string]any{}
	sg := &schemaGen{defs: schemas}
	errRef, errV2Ref := sg.schema(reflect.TypeFor[api.ErrorBody]()), sg.schema(reflect.TypeFor[api.ErrorV2]())
	paths := map[string]any{}
	for _, r := range routes {
		p, params := openAPIPath(r.Path)
		item, _ := paths[p].(map[string]any)
		if item == nil {
			item = map[string]any{}
			paths[p] = item
		}
		op := map[string]any{"operationId": r.Name, "summary": r.Summary}
		var ps []any
		for _, name := range params {
			ps = append(ps, map[string]any{"name": name, "in": "path", "required": true, "schema": map[string]any{"type": "string"}})
		}
		for _, q := range r.Query {
			ps = append(ps, map[string]any{"name": q.Name, "in": "query", "required": false, "description": q.Description,
				"schema": map[string]any{"type": "integer", "minimum": q.Minimum}})
		}
		if r.Binary {
			ps = append(ps, map[string]any{"name": api.HeaderInferenceHeaderContentLength, "in": "header", "required": false,
				"description": "With the binary tensor data extension: the length in bytes of the JSON header that starts the body.",
				"schema":      map[string]any{"type": "integer", "minimum": 1}})
		}
		if ps != nil {
			op["parameters"] = ps
		}
		if r.Description != "" {
			op["description"] = r.Description
		}
		if r.Scope != "" {
			sec := []any{map[string]any{"apiKey": []any{string(r.Scope)}}}
			if r.OrScope != "" { // either one: OpenAPI's security requirements are alternatives
				sec = append(sec, map[string]any{"apiKey": []any{string(r.OrScope)}})
			}
			op["security"] = sec
		}
		var body map[string]any
		switch {
		case r.Request != nil:
			body = map[string]any{"application/json": map[string]any{"schema": sg.schema(reflect.TypeOf(r.Request))}}
		case r.ContentType != "":
			body = map[string]any{r.ContentType: map[string]any{"schema": map[string]any{"type": "string", "format": "binary"}}}
		}
		if r.Binary {
			if body == nil {
				body = map[string]any{}
			}
			body[binaryMediaType] = map[string]any{"schema": map[string]any{"type": "string", "format": "binary",
				"description": "The binary tensor data extension: the request as JSON (" + api.HeaderInferenceHeaderContentLength + " bytes), then the inputs' raw little-endian bytes (an input's parameters.binary_data_size)."}}
		}
		if body != nil {
			op["requestBody"] = map[string]any{"required": !r.BodyOptional, "content": body}
		}
		ok := map[string]any{"description": "success"}
		switch {
		case r.ResponseType == eventStreamMediaType:
			ok["content"] = map[string]any{eventStreamMediaType: map[string]any{"schema": map[string]any{"type": "string",
				"description": "Server-Sent Events; each event's data is a " + typeName(r.Response) + " as JSON, an error event's an ErrorBody."}}}
			sg.schema(reflect.TypeOf(r.Response)) // the events' data, in the components
		case r.ResponseType != "":
			ok["content"] = map[string]any{r.ResponseType: map[string]any{"schema": map[string]any{"type": "string"}}}
		case r.Response != nil:
			ok["content"] = map[string]any{"application/json": map[string]any{"schema": sg.schema(reflect.TypeOf(r.Response))}}
		}
		if r.Binary {
			content, _ := ok["content"].(map[string]any)
			if content == nil {
				content = map[string]any{}
				ok["content"] = content
			}
			content[binaryMediaType] = map[string]any{"schema": map[string]any{"type": "string", "format": "binary",
				"description": "When an output asks for binary data: the response as JSON (" + api.HeaderInferenceHeaderContentLength + " bytes), then the binary outputs' bytes (an output's parameters.binary_data_size)."}}
			ok["headers"] = map[string]any{api.HeaderInferenceHeaderContentLength: map[string]any{
				"description": "With an application/octet-stream response: the length in bytes of the JSON header that starts the body.",
				"schema":      map[string]any{"type": "integer"}}}
		}
		fail := errRef
		if isV2(r.Path) {
			fail = errV2Ref // the protocol's own error body (see handleError)
		}
		responses := map[string]any{
			"2XX":     ok,
			"default": map[string]any{"description": "error", "content": map[string]any{"application/json": map[string]any{"schema": fail}}},
		}
		if notReadyV2(r) {
			responses["400"] = map[string]any{"description": "not ready (the protocol's false is a 4xx status)",
				"content": map[string]any{"application/json": map[string]any{"schema": sg.schema(reflect.TypeOf(r.Response))}}}
		}
		op["responses"] = responses
		item[strings.ToLower(r.Method)] = op
		if answersHead(r) {
			item["head"] = headOp(op, r.Name)
		}
	}
	return map[string]any{
		"openapi": "3.1.0",
		"info":    map[string]any{"title": "s3t", "version": "1", "description": "Exact machine unlearning model server (S3T)."},
		"paths":   paths,
		"components": map[string]any{
			"schemas":         schemas,
			"securitySchemes": map[string]any{"apiKey": map[string]any{"type": "http", "scheme": "bearer"}},
		},
	}
}

// notReadyV2 reports whether r is a KServe v2 readiness route (/v2/health/ready, a model's
// ready), which answers "not ready" as 400 with its usual body rather than an error body.
func notReadyV2(r Route) bool {
	return isV2(r.Path) && strings.HasSuffix(r.Path, "/ready") && r.Response != nil
}

// answersHead reports whether r also answers HEAD, as New registers it: every GET but the
// event stream.
func answersHead(r Route) bool {
	return r.Method == http.MethodGet && r.ResponseType != eventStreamMediaType
}

// headOp is the HEAD twin of a GET operation: the same parameters, security and statuses,
// with the response headers and no response body.
func headOp(get map[string]any, name string) map[string]any {
	op := maps.Clone(get)
	op["operationId"] = name + "Head"
	responses := map[string]any{}
	for status, v := range get["responses"].(map[string]any) {
		res := maps.Clone(v.(map[string]any))
		delete(res, "content")
		responses[status] = res
	}
	op["responses"] = responses
	return op
}

// Media types of the document beyond JSON.
const (
	eventStreamMediaType = "text/event-stream"
	binaryMediaType      = "application/octet-stream"
)

// typeName is the name of v's type (a component of the document when a struct).
func typeName(v any) string { return reflect.TypeOf(v).Name() }

// schemaGen derives JSON Schemas from Go types, one component per named struct.
type schemaGen struct{ defs map[string]any }

func (g *schemaGen) schema(t reflect.Type) map[string]any {
	switch t {
	case reflect.TypeFor[time.Time]():
		return map[string]any{"type": "string", "format": "date-time"}
	case reflect.TypeFor[json.RawMessage]():
		return map[string]any{"description": "any JSON value"}
	}
	switch t.Kind() {
	case reflect.Pointer:
		return g.schema(t.Elem())
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer"}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Slice, reflect.Array:
		return map[string]any{"type": "array", "items": g.schema(t.Elem())}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": g.schema(t.Elem())}
	case reflect.Struct:
		name := t.Name()
		if _, ok := g.defs[name]; !ok {
			g.defs[name] = nil // placeholder against recursion
			props := map[string]any{}
			g.fields(t, props)
			g.defs[name] = map[string]any{"type": "object", "properties": props}
		}
		return map[string]any{"$ref": "#/components/schemas/" + name}
	}
	return map[string]any{}
}

func (g *schemaGen) fields(t reflect.Type, props map[string]any) {
	for f := range t.Fields() {
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			g.fields(f.Type, props)
			continue
		}
		if name == "" {
			name = f.Name
		}
		props[name] = g.schema(f.Type)
	}
}

func (s *Server) openAPI(c echo.Context) error {
	return c.JSONBlob(http.StatusOK, s.openapi)
}
