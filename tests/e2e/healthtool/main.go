// kstatus-compute runs the real kstatus library (sigs.k8s.io/cli-utils/pkg/kstatus/status),
// the status logic Flux, Helm 4 --wait and cli-utils' appliers use, on Kubernetes objects.
//
// Input on stdin: a JSON array of objects. Output on stdout: a JSON array of results in the
// same order, each {"status": "Current|InProgress|Failed|Terminating|...", "message": "..."}.
// One process for many objects keeps the tests fast.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type result struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

func main() {
	var objects []json.RawMessage
	if err := json.NewDecoder(os.Stdin).Decode(&objects); err != nil {
		fmt.Fprintf(os.Stderr, "kstatus-compute: reading a JSON array of objects: %v\n", err)
		os.Exit(2)
	}
	results := make([]result, 0, len(objects))
	for i, raw := range objects {
		// Unstructured's own decoder keeps integers as int64, as the API machinery does
		// (a plain map decode would turn metadata.generation into a float).
		obj := &unstructured.Unstructured{}
		if err := obj.UnmarshalJSON(raw); err != nil {
			fmt.Fprintf(os.Stderr, "kstatus-compute: object %d: %v\n", i, err)
			os.Exit(2)
		}
		res, err := status.Compute(obj)
		if err != nil {
			fmt.Fprintf(os.Stderr, "kstatus-compute: object %d: %v\n", i, err)
			os.Exit(1)
		}
		results = append(results, result{Status: string(res.Status), Message: res.Message})
	}
	if err := json.NewEncoder(os.Stdout).Encode(results); err != nil {
		fmt.Fprintf(os.Stderr, "kstatus-compute: writing results: %v\n", err)
		os.Exit(1)
	}
}
