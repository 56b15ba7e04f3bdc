// The REST gateway of the design this project replaces, for the benchmark only: gin answering
// GET /gcd/:a/:b with {"result":"6"}, or 400 {"error":"Invalid parameter A"}, through one gRPC
// connection to the Go server. No access log, as the Python gateway keeps none.
package main

import (
	"flag"
	"fmt"
	"log"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"
	"google.golang.org/grpc"

	pb "gcdbench/gcdpb"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "address to serve REST on")
	upstream := flag.String("upstream", "127.0.0.1:3000", "the gRPC server")
	flag.Parse()
	connection, err := grpc.Dial(*upstream, grpc.WithInsecure())
	if err != nil {
		log.Fatalf("cannot dial %s: %v", *upstream, err)
	}
	client := pb.NewGCDServiceClient(connection)

	gin.SetMode(gin.ReleaseMode)
	router := gin.New()
	router.GET("/gcd/:a/:b", func(c *gin.Context) {
		a, err := strconv.ParseUint(c.Param("a"), 10, 64)
		if err != nil {
			c.JSON(http.StatusBadRequest, gin.H{"error": "Invalid parameter A"})
			return
		}
		b, err := strconv.ParseUint(c.Param("b"), 10, 64)
		if err != nil {
			c.JSON(http.StatusBadRequest, gin.H{"error": "Invalid parameter B"})
			return
		}
		response, err := client.Compute(c, &pb.ComputeRequest{A: a, B: b})
		if err != nil {
			c.JSON(http.StatusInternalServerError, gin.H{"error": err.Error()})
			return
		}
		c.JSON(http.StatusOK, gin.H{"result": fmt.Sprint(response.Result)})
	})
	log.Fatal(router.Run(*listen))
}
