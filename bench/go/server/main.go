// The gRPC server of the design this project replaces, for the benchmark only: gcd.v1.GCDService
// on one port with server reflection, and grpc.health.v1 so the benchmark can tell when it is up.
package main

import (
	"context"
	"flag"
	"log"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	pb "gcdbench/gcdpb"
)

// The generated Unimplemented server answers UNIMPLEMENTED for every RPC of proto/ this file does
// not write, so an RPC added there needs nothing here.
type gcdServer struct {
	pb.UnimplementedGCDServiceServer
}

func (gcdServer) Compute(_ context.Context, request *pb.ComputeRequest) (*pb.ComputeResponse, error) {
	a, b := request.A, request.B
	for b != 0 {
		a, b = b, a%b
	}
	return &pb.ComputeResponse{Result: a}, nil
}

func main() {
	listen := flag.String("listen", "127.0.0.1:3000", "address to serve gRPC on")
	flag.Parse()
	listener, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("cannot listen on %s: %v", *listen, err)
	}
	server := grpc.NewServer()
	// A pointer: the Unimplemented server's methods have pointer receivers.
	pb.RegisterGCDServiceServer(server, &gcdServer{})
	healthServer := health.NewServer()
	healthServer.SetServingStatus("gcd.v1.GCDService", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(server, healthServer)
	reflection.Register(server)
	log.Fatal(server.Serve(listener))
}
