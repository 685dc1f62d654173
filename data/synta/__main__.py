from data.synta.generator import main

main()
