import unittest

from greet import greet


class GreetTest(unittest.TestCase):
    def test_greets_by_name(self):
        self.assertEqual(greet("Ada"), "Hello, Ada!")

    def test_another_name(self):
        self.assertEqual(greet("Linus"), "Hello, Linus!")


if __name__ == "__main__":
    unittest.main()
