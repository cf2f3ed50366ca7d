from lightning_deblur.cli import main

main()
