"""What the course builds with the library: the perceptron, the digits demo,
text tools and the next-token language model (``fastnn lm``)."""
