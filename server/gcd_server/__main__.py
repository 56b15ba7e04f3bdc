from gcd_server.app import main

main()
