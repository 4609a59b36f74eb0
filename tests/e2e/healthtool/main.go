// healthtool runs the real health logic of the GitOps tools on Kubernetes objects.
//
//	healthtool kstatus          kstatus (sigs.k8s.io/cli-utils/pkg/kstatus/status): what Flux,
//	                            Helm 4 --wait and cli-utils appliers use
//	healthtool argocd SCRIPT    an Argo CD health check (Lua) in gopher-lua, the interpreter Argo
//	                            CD embeds, set up the way Argo CD sets it up: only the base,
//	                            table and package libraries, the object as the global `obj`, a
//	                            one-second limit, and a result that must be a table whose status
//	                            is one of Argo CD's health codes (else Unknown)
//
// Input on stdin: a JSON array of objects. Output on stdout: a JSON array of results in the
// same order, each {"status": "...", "message": "..."}. One process for many objects keeps the
// tests fast.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type result struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

var argoHealthCodes = map[string]bool{
	"Unknown": true, "Progressing": true, "Suspended": true, "Healthy": true, "Degraded": true,
	"Missing": true,
}

func fail(code int, format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "healthtool: "+format+"\n", args...)
	os.Exit(code)
}

func main() {
	if len(os.Args) < 2 {
		fail(2, "usage: healthtool kstatus | healthtool argocd SCRIPT (objects as a JSON array on stdin)")
	}
	var raws []json.RawMessage
	if err := json.NewDecoder(os.Stdin).Decode(&raws); err != nil {
		fail(2, "reading a JSON array of objects: %v", err)
	}
	objects := make([]*unstructured.Unstructured, 0, len(raws))
	for i, raw := range raws {
		// Unstructured's own decoder keeps integers as int64, as the API machinery does
		// (a plain map decode would turn metadata.generation into a float).
		obj := &unstructured.Unstructured{}
		if err := obj.UnmarshalJSON(raw); err != nil {
			fail(2, "object %d: %v", i, err)
		}
		objects = append(objects, obj)
	}
	var results []result
	switch os.Args[1] {
	case "kstatus":
		results = kstatusAll(objects)
	case "argocd":
		if len(os.Args) != 3 {
			fail(2, "usage: healthtool argocd SCRIPT")
		}
		script, err := os.ReadFile(os.Args[2])
		if err != nil {
			fail(2, "reading the script: %v", err)
		}
		results = argocdAll(objects, string(script))
	default:
		fail(2, "unknown mode %q", os.Args[1])
	}
	if err := json.NewEncoder(os.Stdout).Encode(results); err != nil {
		fail(1, "writing results: %v", err)
	}
}

func kstatusAll(objects []*unstructured.Unstructured) []result {
	results := make([]result, 0, len(objects))
	for i, obj := range objects {
		res, err := status.Compute(obj)
		if err != nil {
			fail(1, "kstatus, object %d: %v", i, err)
		}
		results = append(results, result{Status: string(res.Status), Message: res.Message})
	}
	return results
}

func argocdAll(objects []*unstructured.Unstructured, script string) []result {
	results := make([]result, 0, len(objects))
	for i, obj := range objects {
		res, err := argocdHealth(obj, script)
		if err != nil {
			fail(1, "argocd, object %d: %v", i, err)
		}
		results = append(results, res)
	}
	return results
}

func argocdHealth(obj *unstructured.Unstructured, script string) (result, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for name, open := range map[string]lua.LGFunction{
		lua.LoadLibName: lua.OpenPackage, lua.BaseLibName: lua.OpenBase, lua.TabLibName: lua.OpenTable,
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(open), NRet: 0, Protect: true}, lua.LString(name)); err != nil {
			return result{}, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(l, obj.Object))
	if err := l.DoString(script); err != nil {
		return result{}, err
	}
	table, ok := l.Get(-1).(*lua.LTable)
	if !ok {
		return result{}, fmt.Errorf("the script returned %s, not a table", l.Get(-1).Type())
	}
	res := result{Status: lua.LVAsString(table.RawGetString("status")),
		Message: lua.LVAsString(table.RawGetString("message"))}
	if !argoHealthCodes[res.Status] {
		return result{Status: "Unknown", Message: "Lua returned an invalid health status"}, nil
	}
	return res, nil
}

// toLua converts an unstructured value the way Argo CD hands objects to health checks: maps to
// tables, lists to sequences, numbers to Lua numbers, null to nil.
func toLua(l *lua.LState, value interface{}) lua.LValue {
	switch v := value.(type) {
	case bool:
		return lua.LBool(v)
	case string:
		return lua.LString(v)
	case int64:
		return lua.LNumber(v)
	case float64:
		return lua.LNumber(v)
	case []interface{}:
		seq := l.CreateTable(len(v), 0)
		for _, item := range v {
			seq.Append(toLua(l, item))
		}
		return seq
	case map[string]interface{}:
		table := l.CreateTable(0, len(v))
		for key, item := range v {
			table.RawSetString(key, toLua(l, item))
		}
		return table
	}
	return lua.LNil
}
